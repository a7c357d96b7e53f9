//! Top scorers per team: a combiner-heavy pipeline.
//!
//! Input lines are `team,player,score` (`--input` glob); without it the
//! pipeline generates `--generate` random records. For each team it writes
//! `team: n=<games> mean=<mean score> top=<player>:<score>,...` with the
//! `--top` best single scores. Three combiners run per key on the same
//! input (count, mean, top-N), each lifted before its shuffle.
//!
//! ```text
//! cargo run --release -p oxbeam-examples --bin top_scores -- --output out/top
//! ```

use clap::Parser;
use oxbeam::combiners::{Count, Mean, Top};
use oxbeam::io::{ReadFromText, WriteToText};
use oxbeam::{Pipeline, PipelineOptions};
use oxbeam_examples::mix;

/// Top scorers per team.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    pipeline: PipelineOptions,
    /// CSV files `team,player,score` (a glob). Omit to generate records.
    #[arg(long)]
    input: Option<String>,
    /// Output file prefix.
    #[arg(long, default_value = "out/top_scores")]
    output: String,
    /// Best scores kept per team.
    #[arg(long, default_value_t = 3)]
    top: usize,
    /// Generated records (without `--input`).
    #[arg(long, default_value_t = 1_000_000)]
    generate: i64,
}

/// Per team: (games and means, cogrouped) and best scores, cogrouped.
type Joined = (String, (Vec<(Vec<i64>, Vec<f64>)>, Vec<Vec<(i64, String)>>));

const TEAMS: [&str; 6] = [
    "Albatross",
    "Badger",
    "Cormorant",
    "Dingo",
    "Egret",
    "Ferret",
];

fn parse(line: &str) -> Option<(String, (i64, String))> {
    let mut f = line.split(',');
    let (team, player, score) = (
        f.next()?.trim(),
        f.next()?.trim(),
        f.next()?.trim().parse().ok()?,
    );
    Some((team.to_string(), (score, player.to_string())))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let p = Pipeline::new(args.pipeline);
    let scores = match &args.input {
        Some(glob) => p
            .apply("Read", ReadFromText::new(glob.clone()))
            .flat_map("Parse", |l: &String| parse(l)),
        None => p
            .generate_sequence("Games", 0, args.generate)
            .map("Generate", |i: &i64| {
                let r = mix(*i as u64);
                let team = TEAMS[(r % TEAMS.len() as u64) as usize].to_string();
                let player = format!("{}-{}", &team[..3], (r >> 8) % 50);
                (team, (((r >> 20) % 1000) as i64, player))
            }),
    };
    let points = scores.map_values("Points", |(s, _): &(i64, String)| *s);
    let games = points.apply("Games", Count::per_key());
    let mean = points.apply("MeanScore", Mean::per_key());
    let best = scores.apply("BestScores", Top::largest_per_key(args.top));
    let joined = games
        .co_group_by_key("JoinCountMean", &mean)
        .co_group_by_key("JoinBest", &best);
    joined
        .map("Format", |(team, (cm, bests)): &Joined| {
            let (n, m) = cm.first().map_or((0, f64::NAN), |(c, m)| {
                (
                    c.first().copied().unwrap_or(0),
                    m.first().copied().unwrap_or(f64::NAN),
                )
            });
            let top: Vec<String> = bests.first().map_or(vec![], |b| {
                b.iter().map(|(s, pl)| format!("{pl}:{s}")).collect()
            });
            format!("{team}: n={n} mean={m:.2} top={}", top.join(","))
        })
        .apply("Write", WriteToText::new(args.output.clone()));
    p.run()?;
    eprintln!("top_scores: wrote {}-00000-of-00001", args.output);
    Ok(())
}
