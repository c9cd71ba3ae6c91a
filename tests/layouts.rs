//! The per-release struct layouts the plugin reads and the emulator plays, checked against
//! the numbers a C compiler gave for each release's own headers (`offsetof` over
//! `include/fluent-bit/*.h` of a configured source tree of that tag, x86-64 glibc). The
//! symbols that choose a processor family were checked in each release's binary with
//! `nm -D`: `flb_processor_get_global_config_map` from 4.0, `flb_mp_count_log_records` from
//! 5.0, `flb_storage_chunk_count` from 4.0.3, `flb_config_map_get_raw` from 5.0.3. To
//! add a release: configure its source, compile a file printing these `offsetof`s with
//! the flags of `src/flb_processor.c` from `compile_commands.json`, and add a row.

use flb_filter_pssession::ffi::layout::{
    ProcessorOffsets, FILTER_INSTANCE, FLUSH_OFFSET, IS_SHUTTING_DOWN_OFFSET, PROCESSOR_3_2,
    PROCESSOR_4, PROCESSOR_5,
};
use pssession_host_emulator::headers as emu;
use std::mem::offset_of;

/// What `offsetof` said for one release.
struct Release {
    tag: &'static str,
    /// flb_filter_instance: parent_processor, p, properties, cmt, config
    filter_instance: [usize; 5],
    /// flb_processor_unit: stage, ctx, parent
    unit: [usize; 3],
    /// flb_processor: data, source_plugin_type, config
    processor: [usize; 3],
    /// flb_config: is_shutting_down, flush, cio, storage_path
    config: [usize; 4],
    /// sizeof(struct flb_config_map)
    config_map_size: usize,
    /// The table the plugin picks for it (by its exported symbols).
    family: ProcessorOffsets,
}

const RELEASES: &[Release] = &[
    Release {
        tag: "v3.2.10",
        filter_instance: [72, 96, 104, 144, 208],
        unit: [16, 24, 104],
        processor: [72, 80, 88],
        config: [80, 88, 1032, 1040],
        config_map_size: 96,
        family: PROCESSOR_3_2,
    },
    Release {
        tag: "v4.0.14",
        filter_instance: [72, 96, 104, 144, 208],
        unit: [16, 24, 112],
        processor: [88, 96, 104],
        config: [80, 88, 1032, 1040],
        config_map_size: 96,
        family: PROCESSOR_4,
    },
    Release {
        tag: "v4.2.8",
        filter_instance: [72, 96, 104, 144, 208],
        unit: [16, 24, 112],
        processor: [88, 96, 104],
        config: [80, 88, 1040, 1048],
        config_map_size: 96,
        family: PROCESSOR_4,
    },
    Release {
        tag: "v5.0.2",
        filter_instance: [72, 96, 104, 144, 208],
        unit: [16, 24, 112],
        processor: [88, 96, 152],
        config: [80, 88, 1040, 1048],
        config_map_size: 96,
        family: PROCESSOR_5,
    },
    Release {
        tag: "v5.0.3",
        filter_instance: [72, 96, 104, 144, 208],
        unit: [16, 24, 112],
        processor: [88, 96, 152],
        config: [80, 88, 1040, 1048],
        config_map_size: 104,
        family: PROCESSOR_5,
    },
    Release {
        tag: "v5.1.1",
        filter_instance: [72, 96, 104, 144, 208],
        unit: [16, 24, 112],
        processor: [88, 96, 152],
        config: [80, 88, 1192, 1200],
        config_map_size: 104,
        family: PROCESSOR_5,
    },
];

#[cfg(target_arch = "x86_64")]
#[test]
fn the_plugin_reads_what_each_release_header_says() {
    for r in RELEASES {
        let fi = FILTER_INSTANCE[0];
        assert_eq!(
            [fi.parent_processor, fi.p, fi.properties, fi.cmt, fi.config],
            r.filter_instance,
            "{}: flb_filter_instance",
            r.tag
        );
        let f = r.family;
        assert_eq!(
            [f.unit_stage, f.unit_ctx, f.unit_parent],
            r.unit,
            "{}: unit",
            r.tag
        );
        assert_eq!(
            [f.proc_data, f.proc_source_type, f.proc_config],
            r.processor,
            "{}: processor",
            r.tag
        );
        assert_eq!(
            [IS_SHUTTING_DOWN_OFFSET, FLUSH_OFFSET],
            [r.config[0], r.config[1]],
            "{}: config head",
            r.tag
        );
        assert_eq!(
            r.config[3] - r.config[2],
            8,
            "{}: cio right before storage_path",
            r.tag
        );
    }
}

#[test]
fn the_families_differ_only_where_the_headers_do() {
    assert_eq!(
        PROCESSOR_4.unit_parent,
        PROCESSOR_3_2.unit_parent + 8,
        "4.0 added condition"
    );
    assert_eq!(
        PROCESSOR_4.proc_data,
        PROCESSOR_3_2.proc_data + 16,
        "4.0 added profiles"
    );
    assert_eq!(
        PROCESSOR_5.proc_config,
        PROCESSOR_4.proc_config + 48,
        "5.0 added six counters"
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn the_emulator_plays_5_1_1_and_3_2_10_as_their_headers_say() {
    let r51 = RELEASES.iter().find(|r| r.tag == "v5.1.1").unwrap();
    let r32 = RELEASES.iter().find(|r| r.tag == "v3.2.10").unwrap();
    assert_eq!(
        [
            offset_of!(emu::flb_filter_instance, parent_processor),
            offset_of!(emu::flb_filter_instance, p),
            offset_of!(emu::flb_filter_instance, properties),
            offset_of!(emu::flb_filter_instance, cmt),
            offset_of!(emu::flb_filter_instance, config)
        ],
        r51.filter_instance
    );
    assert_eq!(
        [
            offset_of!(emu::flb_processor_unit_5_1, stage),
            offset_of!(emu::flb_processor_unit_5_1, ctx),
            offset_of!(emu::flb_processor_unit_5_1, parent)
        ],
        r51.unit
    );
    assert_eq!(
        [
            offset_of!(emu::flb_processor_5_1, data),
            offset_of!(emu::flb_processor_5_1, source_plugin_type),
            offset_of!(emu::flb_processor_5_1, config)
        ],
        r51.processor
    );
    assert_eq!(
        [
            offset_of!(emu::flb_processor_unit_3_2, stage),
            offset_of!(emu::flb_processor_unit_3_2, ctx),
            offset_of!(emu::flb_processor_unit_3_2, parent)
        ],
        r32.unit
    );
    assert_eq!(
        [
            offset_of!(emu::flb_processor_3_2, data),
            offset_of!(emu::flb_processor_3_2, source_plugin_type),
            offset_of!(emu::flb_processor_3_2, config)
        ],
        r32.processor
    );
    assert_eq!(
        [
            offset_of!(emu::flb_config_head, is_shutting_down),
            offset_of!(emu::flb_config_head, flush)
        ],
        [r51.config[0], r51.config[1]]
    );
    assert_eq!(
        (emu::CONFIG_CIO_5_1_1, emu::CONFIG_CIO_3_2_10),
        (r51.config[2], r32.config[2])
    );
    assert_eq!(
        std::mem::size_of::<emu::flb_config_map<{ emu::CONFIG_MAP_VALUE_CURRENT }>>(),
        r51.config_map_size
    );
    assert_eq!(
        std::mem::size_of::<emu::flb_config_map<{ emu::CONFIG_MAP_VALUE_LEGACY }>>(),
        r32.config_map_size
    );
}
