//! Script blocks split over several 4104 events, through the built .so: reassembled in any
//! order, interleaved with other blocks and hosts, judged at timeout, bounded in memory.

mod common;
pssession_host_emulator::export_host_symbols!();

use common::*;
use pssession_core::chunk_io::{decode_chunk, Layout};
use pssession_host_emulator::emitted;
use serde_json::{json, Value};

/// The parts of a script whose command is in the first part and whose parameter is in
/// part `param_at` (1-based) of `n`, NXLog-shaped.
fn parts(host: &str, id: &str, n: usize, param_at: usize) -> Vec<Value> {
    (1..=n)
        .map(|i| {
            let text = match i {
                1 => "$t = 'dc01'\r\nEnter-PSSession `\r\n".to_string(),
                i if i == param_at => "  -ComputerName $t -Credential $c\r\n".to_string(),
                i => format!("# filler line {i} of the script\r\nGet-Date | Out-Null\r\n"),
            };
            json!({"EventID": 4104, "Channel": "Microsoft-Windows-PowerShell/Operational",
                   "Hostname": host, "Domain": "CONTOSO", "AccountName": "admin",
                   "MessageNumber": i.to_string(), "MessageTotal": n.to_string(),
                   "ScriptBlockId": id, "ScriptBlockText": text,
                   "Message": format!("Creating Scriptblock text ({i} of {n}):\r\n{text}\r\n\r\nScriptBlock ID: {id}\r\nPath: C:\\x.ps1")})
        })
        .collect()
}

/// A deterministic shuffle.
fn shuffled<T: Clone>(v: &[T], seed: usize) -> Vec<T> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    let mut x = (seed as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for i in (1..idx.len()).rev() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        idx.swap(i, (x >> 33) as usize % (i + 1));
    }
    idx.into_iter().map(|i| v[i].clone()).collect()
}

#[test]
fn exact_mode_judges_each_part_alone_and_misses_the_split_command() {
    let inst = plugin().instance(&[("match", "*")]).unwrap();
    let chunk = chunk_of(&parts("ws01", "id-0", 3, 3), 1.7e9, Layout::CURRENT);
    assert!(!inst.filter(&chunk, "win").modified());
}

#[test]
fn split_scripts_of_2_to_50_parts_in_any_order_are_flagged_once() {
    let inst = plugin()
        .instance(&[("match", "*"), ("reassemble", "on"), ("alias", "re1")])
        .unwrap();
    for n in [2usize, 3, 7, 20, 50] {
        let mine = parts("ws01", &format!("blk-{n}"), n, n);
        // interleaved with another block of the same host and a block with the same id on
        // another host, neither of which is a match
        let mut other: Vec<Value> = parts("ws01", &format!("other-{n}"), n, 0);
        let mut twin: Vec<Value> = parts("ws02", &format!("blk-{n}"), n, 0);
        for v in other.iter_mut().chain(twin.iter_mut()) {
            v["ScriptBlockText"] = json!("Get-Process\r\n");
            v["Message"] = json!("Creating Scriptblock text (x of y):\r\nGet-Process");
        }
        let mut all = Vec::new();
        for i in 0..n {
            all.push(mine[i].clone());
            all.push(other[i].clone());
            all.push(twin[i].clone());
        }
        let all = shuffled(&all, n);
        // feed in chunks of 5 records
        let mut flagged = Vec::new();
        for (c, part) in all.chunks(5).enumerate() {
            let chunk = chunk_of(part, 1.7e9, Layout::CURRENT);
            let call = inst.filter(&chunk, "win");
            let ins = decode(&chunk);
            for (k, out) in decode(&call.chunk).iter().enumerate() {
                if out.raw != ins[k].raw {
                    flagged.push((c, k, out.body.clone()));
                }
            }
        }
        assert_eq!(flagged.len(), 1, "{n} parts: flagged {}", flagged.len());
        let body = &flagged[0].2;
        assert_eq!(body["Hostname"], "ws01");
        assert_eq!(body["ScriptBlockId"], format!("blk-{n}"));
        assert_eq!(body["pssession"]["script_block_id"], format!("blk-{n}"));
        assert_eq!(body["pssession"]["parts"], n);
        assert_eq!(body["pssession"]["parts_total"], n);
        assert_eq!(body["pssession"]["reassembly"], "complete");
        // the flagged record is the last of the block to arrive
        let last_of_block = all
            .iter()
            .rposition(|v| v["Hostname"] == "ws01" && v["ScriptBlockId"] == format!("blk-{n}"))
            .unwrap();
        assert_eq!(flagged[0].0 * 5 + flagged[0].1, last_of_block);
    }
}

#[test]
fn missing_part_is_judged_at_timeout_and_emitted_under_its_tag() {
    let inst = plugin()
        .instance(&[
            ("match", "*"),
            ("reassemble", "on"),
            ("reassemble_timeout", "1s"),
            ("alias", "re_to"),
        ])
        .unwrap();
    let mut p = parts("ws03", "gap", 4, 2);
    p.remove(3); // part 4 never comes
    let call = inst.filter(&chunk_of(&p, 1.7e9, Layout::CURRENT), "win.ps");
    assert!(!call.modified(), "incomplete: parts pass unchanged");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    inst.fire_timers(); // the tick judges the block as it stands and emits it
    inst.fire_timers(); // the next interval flush carries its row
    let late: Vec<_> = emitted("emitter_for_re_to")
        .into_iter()
        .filter(|e| e.tag == "win.ps")
        .collect();
    assert_eq!(late.len(), 1);
    let rec = &decode_chunk(&late[0].data).unwrap()[0];
    assert_eq!(rec.body["pssession"]["reassembly"], "timeout");
    assert_eq!(rec.body["pssession"]["parts"], 3);
    assert_eq!(rec.body["pssession"]["parts_total"], 4);
    assert_eq!(
        rec.body["MessageNumber"], "3",
        "a copy of the last part that arrived"
    );
    let rows: Vec<_> = emitted("emitter_for_re_to")
        .into_iter()
        .filter(|e| e.tag == "pssession.aggregate")
        .collect();
    assert_eq!(rows.len(), 1, "the late flag is counted");
}

#[test]
fn memory_bounds_judge_the_oldest_block_and_say_so() {
    let inst = plugin()
        .instance(&[
            ("match", "*"),
            ("reassemble", "on"),
            ("reassemble_max_blocks", "2"),
            ("alias", "re_bound"),
        ])
        .unwrap();
    let a = parts("ws04", "a", 3, 2);
    let b = parts("ws04", "b", 3, 2);
    let c = parts("ws04", "c", 3, 2);
    // two parts of a (command and parameter), then b and c open: a is pushed out
    let chunk = chunk_of(
        &[a[0].clone(), a[1].clone(), b[0].clone(), c[0].clone()],
        1.7e9,
        Layout::CURRENT,
    );
    inst.filter(&chunk, "win.ps");
    let late: Vec<_> = emitted("emitter_for_re_bound")
        .into_iter()
        .filter(|e| e.tag == "win.ps")
        .collect();
    assert_eq!(late.len(), 1);
    let rec = &decode_chunk(&late[0].data).unwrap()[0];
    assert_eq!(rec.body["ScriptBlockId"], "a");
    assert_eq!(rec.body["pssession"]["reassembly"], "bound");
    assert!(inst.logs().iter().any(|l| l
        .text
        .contains("judged before completion because reassemble_max_blocks")));
    let inst = plugin()
        .instance(&[
            ("match", "*"),
            ("reassemble", "on"),
            ("reassemble_max_bytes", "1K"),
            ("alias", "re_bytes"),
        ])
        .unwrap();
    let mut big = parts("ws05", "big", 2, 2);
    big[0]["ScriptBlockText"] = json!(format!(
        "Enter-PSSession -ComputerName x {}",
        "A".repeat(2000)
    ));
    inst.filter(&chunk_of(&big[..1], 1.7e9, Layout::CURRENT), "win.ps");
    let late: Vec<_> = emitted("emitter_for_re_bytes")
        .into_iter()
        .filter(|e| e.tag == "win.ps")
        .collect();
    assert_eq!(
        late.len(),
        1,
        "a block over the byte bound is judged at once"
    );
}

#[test]
fn linux_and_winevtlog_parts_reassemble_too() {
    let inst = plugin()
        .instance(&[("match", "*"), ("reassemble", "on")])
        .unwrap();
    let hdr = "(7.4.1:9:80) [ScriptBlock_Compile_Detail:ExecuteCommand.Create.Warning] ";
    let line = |i: usize, text: &str| {
        json!({"host": "lnx01", "ident": "pwsh",
               "message": format!("{hdr}Creating Scriptblock text ({i} of 2):#012{text}#012#012ScriptBlock ID: lx-1#012Path: ")})
    };
    let chunk = chunk_of(
        &[line(2, "-ComputerName win01"), line(1, "Enter-PSSession `")],
        1.7e9,
        Layout::CURRENT,
    );
    let out = decode(&inst.filter(&chunk, "linux").chunk);
    assert!(out[0].body.get("pssession").is_none());
    assert_eq!(out[1].body["pssession"]["script_block_id"], "lx-1");
    assert_eq!(out[1].body["pssession"]["ComputerName"], "lnx01");

    let win = |i: usize, text: &str| {
        json!({"EventID": 4104, "Channel": "Microsoft-Windows-PowerShell/Operational", "Computer": "ws09",
               "UserID": "S-1-5-21-1", "StringInserts": [i, 2, text, "wv-1", ""]})
    };
    let chunk = chunk_of(
        &[win(1, "Enter-PSSession `"), win(2, "-ComputerName dc09")],
        1.7e9,
        Layout::CURRENT,
    );
    let out = decode(&inst.filter(&chunk, "win").chunk);
    assert_eq!(out[1].body["pssession"]["parts"], 2);
}

/// The fuzzer's `ffi_entry` finding (`../shared/fuzz/ffi_entry-reassemble-tail.bin`): its
/// target kept one instance across inputs, so a block opened by an earlier input completed
/// in a chunk that ends in bytes that are not records. The filter appended the late flag
/// after the chunk's records and before that tail, as it promises; the target's oracle
/// expected the tail right after the input's last record. The cause was the oracle.
#[test]
fn a_late_flag_goes_after_the_records_and_before_an_undecodable_tail() {
    let inst = plugin()
        .instance_in(
            pssession_host_emulator::Placement::OutputProcessor,
            &[
                ("match", "*"),
                ("reassemble", "on"),
                ("reassemble_max_blocks", "1"),
            ],
        )
        .unwrap();
    // block A: parts 1 and 2 of 3 (the command and its -ComputerName), left open
    let a = parts("ws01", "blk-a", 3, 2);
    let first = chunk_of(&a[..2], 1.7e9, Layout::CURRENT);
    assert!(!inst.filter(&first, "win").modified(), "an open block");
    // block B opens in a chunk that ends in bytes that are not records: A is pushed out by
    // the one-block bound and judged as it stood, on a copy of its last part
    let b = parts("ws01", "blk-b", 2, 0);
    let tail: &[u8] = &[0x92, 0xc1, 0x05, 0xc1];
    let mut second = chunk_of(&b[..1], 1.7e9 + 1.0, Layout::CURRENT);
    let records_end = second.len();
    second.extend_from_slice(tail);
    let out = inst.filter(&second, "win").chunk;
    // read with the independent decoder, not the plugin's reader
    let (ins, in_end) = pssession_oracle::values(&second);
    let (outs, out_end) = pssession_oracle::values(&out);
    assert_eq!((ins.len(), in_end), (1, records_end));
    assert_eq!(outs.len(), 2, "B's part, then A's late flag");
    assert_eq!(outs[0].raw, ins[0].raw, "B's part is untouched");
    let late = rmpv::decode::read_value(&mut outs[1].body().expect("a map body")).unwrap();
    let field = |k: &str| {
        late.as_map()
            .and_then(|m| m.iter().find(|(n, _)| n.as_str() == Some(k)))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        field("ScriptBlockId")
            .and_then(|v| v.as_str().map(String::from))
            .as_deref(),
        Some("blk-a")
    );
    let ns = field("pssession").expect("flagged: the plugin's namespace is there");
    assert!(
        format!("{ns}").contains("\"reassembly\": \"bound\""),
        "judged at the bound: {ns}"
    );
    assert_eq!(&out[out_end..], tail, "the tail still ends the chunk");
    assert!(
        !out[ins[0].raw.len()..].starts_with(tail),
        "the old oracle's assumption (tail right after the input's records) does not hold"
    );
}

/// Every input `ffi_entry` once failed on (`tests/data/fuzz/ffi_entry/`, byte for byte), fed
/// after a chunk that leaves a block open, to instances with and without reassembly, as a
/// filter and as an output processor (where late flags are appended): every input record
/// comes out in order, anything appended is whole records, and an undecodable tail still
/// ends the chunk.
#[test]
fn fuzz_findings_replay_clean_after_open_blocks() {
    use pssession_host_emulator::Placement;
    let mut files: Vec<_> = std::fs::read_dir("tests/data/fuzz/ffi_entry")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no findings kept");
    let opening = chunk_of(
        &parts("ws01", "blk-open", 3, 2)[..2],
        1.7e9,
        Layout::CURRENT,
    );
    let settings: [&[(&str, &str)]; 3] = [
        &[("match", "*")],
        &[
            ("match", "*"),
            ("reassemble", "on"),
            ("reassemble_max_blocks", "1"),
        ],
        &[
            ("match", "*"),
            ("mode", "extended"),
            ("reassemble_max_blocks", "1"),
        ],
    ];
    for file in &files {
        let finding = std::fs::read(file).unwrap();
        for props in settings {
            for placement in [Placement::Filter, Placement::OutputProcessor] {
                let what = format!("{} {props:?} {placement:?}", file.display());
                let inst = plugin().instance_in(placement, props).unwrap();
                inst.filter(&opening, "win");
                let out = inst.filter(&finding, "win").chunk;
                let (ins, in_end) = pssession_oracle::values(&finding);
                let (outs, out_end) = pssession_oracle::values(&out);
                assert!(outs.len() >= ins.len(), "{what}: records lost");
                for (a, b) in ins.iter().zip(&outs) {
                    assert!(
                        a.raw == b.raw
                            || matches!((a.body(), b.body()), (Some(x), Some(y)) if pssession_oracle::keeps_original(x, y)),
                        "{what}: a record changed"
                    );
                }
                assert_eq!(&out[out_end..], &finding[in_end..], "{what}: tail");
            }
        }
    }
}
