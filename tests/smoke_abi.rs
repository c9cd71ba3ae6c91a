flb_filter_pssession::export_host_symbols!();
use flb_filter_pssession::host_emulator::*;
#[test]
fn loads() {
    let p = shared_plugin().unwrap();
    eprintln!("{:?}", p.config_map.iter().map(|m| &m.name).collect::<Vec<_>>());
    let i = p.instance(&[("match", "*"), ("exclude_user", "a"), ("exclude_user", "b(")]);
    eprintln!("{:?}", i.as_ref().err());
    let i = p.instance(&[("match", "*"), ("bogus", "a")]);
    eprintln!("{:?}", i.as_ref().err());
    let i = p.instance(&[("match", "*")]).unwrap();
    let r = i.filter(b"\x92\x01\x80", "t");
    eprintln!("{:?} {:?}", r, i.logs());
}
