//! Reading one record: its shape (Windows and Linux), into one event view.
pub mod linux;
pub mod script_block;
pub mod shapes;
pub mod timefmt;
pub mod xml_event;
