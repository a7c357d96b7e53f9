//! Text and JSON-lines IO round trips.

use std::fs;

use oxbeam::io::{ReadFromText, ReadJsonLines, WriteJsonLines, WriteToText, shard_name};

use crate::common::{pipeline, strings};

fn read_all_lines(dir: &std::path::Path) -> Vec<String> {
    let mut lines = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_file() {
            lines.extend(
                fs::read_to_string(&path)
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    lines.sort();
    lines
}

#[test]
fn text_round_trip_with_shards() {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("in");
    fs::create_dir(&input_dir).unwrap();
    fs::write(input_dir.join("a.txt"), "alpha\nbeta\r\ngamma").unwrap();
    fs::write(input_dir.join("b.txt"), "delta\n\nepsilon\n").unwrap();
    fs::write(input_dir.join("skip.dat"), "not read\n").unwrap();
    let out_dir = dir.path().join("out");
    let prefix = out_dir.join("lines").to_string_lossy().into_owned();

    let p = pipeline();
    let files = p
        .apply(
            "Read",
            ReadFromText::new(format!("{}/*.txt", input_dir.display())),
        )
        .map("Upper", |l: &String| l.to_uppercase())
        .apply(
            "Write",
            WriteToText::new(prefix.clone())
                .with_num_shards(3)
                .with_suffix(".txt"),
        )
        .collect_for_testing("Files");
    p.run().unwrap();

    let mut names: Vec<String> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "lines-00000-of-00003.txt",
            "lines-00001-of-00003.txt",
            "lines-00002-of-00003.txt"
        ]
    );
    assert_eq!(
        files.sorted(),
        (0..3)
            .map(|i| shard_name(&prefix, i, 3, ".txt"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        read_all_lines(&out_dir),
        strings(&["", "ALPHA", "BETA", "DELTA", "EPSILON", "GAMMA"])
    );
}

#[test]
fn lines_crossing_split_boundaries_are_read_once() {
    // Many lines of varying length in one file: whatever the split size, each
    // line is read exactly once.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.txt");
    let lines: Vec<String> = (0..20_000)
        .map(|i| format!("line {i} {}", "x".repeat(i % 17)))
        .collect();
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    let p = pipeline();
    let n = p
        .apply("Read", ReadFromText::new(path.to_string_lossy()))
        .apply("Count", oxbeam::combiners::Count::globally())
        .collect_for_testing("N");
    p.run().unwrap();
    assert_eq!(n.values(), vec![20_000]);
}

#[derive(Clone, Debug, PartialEq, PartialOrd, serde::Serialize, serde::Deserialize)]
struct Score {
    user: String,
    points: i64,
}
oxbeam::serde_element!(Score);

#[test]
fn json_lines_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("scores").to_string_lossy().into_owned();
    let p = pipeline();
    p.create(
        "Scores",
        vec![
            Score {
                user: "ann".into(),
                points: 3,
            },
            Score {
                user: "bo".into(),
                points: 4,
            },
        ],
    )
    .apply("Write", WriteJsonLines::new(prefix.clone()));
    p.run().unwrap();
    let written = fs::read_to_string(shard_name(&prefix, 0, 1, "")).unwrap();
    let mut lines: Vec<&str> = written.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            r#"{"user":"ann","points":3}"#,
            r#"{"user":"bo","points":4}"#
        ]
    );

    let p = pipeline();
    let back = p
        .apply("Read", ReadJsonLines::<Score>::new(format!("{prefix}-*")))
        .collect_for_testing("Back");
    p.run().unwrap();
    let mut got = back.values();
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(
        got,
        vec![
            Score {
                user: "ann".into(),
                points: 3
            },
            Score {
                user: "bo".into(),
                points: 4
            }
        ]
    );
}

#[test]
fn empty_input_still_writes_every_shard() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("empty").to_string_lossy().into_owned();
    let p = pipeline();
    p.create("Nothing", Vec::<String>::new())
        .apply("Write", WriteToText::new(prefix.clone()).with_num_shards(2));
    p.run().unwrap();
    for i in 0..2 {
        assert_eq!(
            fs::read_to_string(shard_name(&prefix, i, 2, "")).unwrap(),
            ""
        );
    }
}

#[test]
fn tiny_read_ranges_read_every_line_once() {
    // Ranges of 3 bytes: most lines straddle boundaries; CRLF, empty lines
    // and a last line without terminator.
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("a.txt"),
        "alpha\r\n\r\nbeta\ngamma delta\n\n",
    )
    .unwrap();
    fs::write(dir.path().join("b.txt"), "x\nyz\r\nlast without newline").unwrap();
    fs::write(dir.path().join("c.txt"), "").unwrap();
    let p = pipeline();
    let lines = p
        .apply(
            "Read",
            ReadFromText::new(format!("{}/*.txt", dir.path().display())).with_split_bytes(3),
        )
        .collect_for_testing("Lines");
    p.run().unwrap();
    assert_eq!(
        lines.sorted(),
        strings(&[
            "",
            "",
            "alpha",
            "beta",
            "gamma delta",
            "last without newline",
            "x",
            "yz"
        ])
    );
}
