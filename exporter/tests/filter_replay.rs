//! `apiscope replay --filter` on the golden recording keeps exactly the lines a jq-style
//! predicate keeps from the unfiltered output; a bad filter stops the start with its column.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn recording() -> (tempfile::TempDir, PathBuf) {
    let gz = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/decode/cluster.pcapng.gz");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cluster.pcapng");
    let mut input = flate2::read::GzDecoder::new(std::fs::File::open(&gz).expect("recording"));
    let mut output = std::fs::File::create(&path).expect("pcapng");
    std::io::copy(&mut input, &mut output).expect("gunzip");
    (dir, path)
}

fn replay(path: &Path, filter: Option<&str>) -> Vec<String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_apiscope"));
    command.arg("replay").arg(path).args(["--log", "warn"]);
    if let Some(filter) = filter {
        command.args(["--filter", filter]);
    }
    let out = command.output().expect("apiscope replay");
    assert!(
        out.status.success(),
        "{filter:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn text<'a>(line: &'a Value, key: &str) -> &'a str {
    line.get(key).and_then(Value::as_str).unwrap_or("")
}

#[test]
fn filtered_replay_is_the_unfiltered_output_selected_by_hand() {
    let (_dir, path) = recording();
    let all = replay(&path, None);
    assert!(all.len() > 50, "{} requests", all.len());
    type Predicate = fn(&Value) -> bool;
    let table: &[(&str, Predicate)] = &[
        // jq: select(.verb == "watch")
        (r#"verb == "watch""#, |r| text(r, "verb") == "watch"),
        (r#"verb == "list" and resource == "pods""#, |r| {
            text(r, "verb") == "list" && text(r, "resource") == "pods"
        }),
        ("code >= 400", |r| {
            r.get("code")
                .and_then(Value::as_u64)
                .is_some_and(|c| c >= 400)
        }),
        ("latency > 10ms", |r| {
            r["duration_seconds"].as_f64().expect("duration") > 0.010
        }),
        (
            r#"client == "kube-scheduler" or user_agent contains "kubectl""#,
            |r| {
                text(r, "component") == "kube-scheduler"
                    || text(r, "user_agent").contains("kubectl")
            },
        ),
        (r#"path =~ "/api/v1/.*" and not long_running"#, |r| {
            text(r, "path").starts_with("/api/v1/") && !r["long_running"].as_bool().expect("bool")
        }),
        (r#"namespace =~ "kube-.*""#, |r| {
            text(r, "namespace").starts_with("kube-")
        }),
    ];
    let mut narrowed = 0;
    for (filter, keep) in table {
        let expected: Vec<&String> = all
            .iter()
            .filter(|line| keep(&serde_json::from_str(line).expect("json line")))
            .collect();
        let got = replay(&path, Some(filter));
        assert_eq!(got.iter().collect::<Vec<_>>(), expected, "{filter}");
        if !expected.is_empty() && expected.len() < all.len() {
            narrowed += 1;
        }
    }
    // The table is worth something only if most filters select a real, proper subset.
    assert!(narrowed >= 5, "only {narrowed} filters narrowed the output");
}

#[test]
fn a_bad_filter_stops_replay_at_start_with_its_column() {
    let out = Command::new(env!("CARGO_BIN_EXE_apiscope"))
        .args([
            "replay",
            "/nonexistent.pcapng",
            "--filter",
            r#"code == "abc""#,
        ])
        .output()
        .expect("apiscope replay");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("column 9: code is a number"), "{stderr}");
    // Refused before the recording was even opened.
    assert!(!stderr.contains("opening recording"), "{stderr}");
}
