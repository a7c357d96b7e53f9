//! Per-user sessions over timestamped events: event time and windowing.
//!
//! Input: JSON lines `{"user": "ann", "ts_ms": 1700000000000, "action": "click"}`
//! (`--input` glob); without it the pipeline generates `--generate` events of
//! 200 users over one day, in bursts. Each event is stamped with its `ts_ms`,
//! windowed into sessions that close after `--gap-minutes` of inactivity
//! (merged per user at the GroupByKey), and each session becomes one line:
//!
//! ```text
//! user-17 2023-11-14T22:13:20Z+00:41:05 events=12
//! ```
//!
//! ```text
//! cargo run --release -p oxbeam-examples --bin user_sessions -- --output out/sessions
//! ```

use std::time::Duration;

use clap::Parser;
use oxbeam::combiners::Count;
use oxbeam::io::{ReadJsonLines, WriteToText};
use oxbeam::{
    BoundedWindow, DoFn, ParDo, Pipeline, PipelineOptions, ProcessContext, Timestamp, WindowFn,
};
use oxbeam_examples::mix;

/// Per-user sessions.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    pipeline: PipelineOptions,
    /// JSON-lines event files (a glob). Omit to generate events.
    #[arg(long)]
    input: Option<String>,
    /// Output file prefix.
    #[arg(long, default_value = "out/sessions")]
    output: String,
    /// Inactivity closing a session, in minutes.
    #[arg(long, default_value_t = 10)]
    gap_minutes: u64,
    /// Generated events (without `--input`).
    #[arg(long, default_value_t = 200_000)]
    generate: i64,
}

/// One user action.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Event {
    user: String,
    ts_ms: i64,
    action: String,
}
oxbeam::serde_element!(Event);

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Event `i`: users act in bursts (sessions) at random times of one day.
fn generated_event(i: i64) -> Event {
    let r = mix(i as u64);
    let user = r % 200;
    let burst = (r >> 8) % 6;
    let burst_start = (mix(user * 31 + burst) % (DAY_MS as u64 - 3_600_000)) as i64;
    let offset = ((r >> 20) % 1_800_000) as i64;
    let action = ["view", "click", "buy", "scroll"][((r >> 40) % 4) as usize];
    Event {
        user: format!("user-{user}"),
        ts_ms: 1_700_000_000_000 + burst_start + offset,
        action: action.into(),
    }
}

/// Formats a session's count with its window.
#[derive(Clone)]
struct FormatSession;

impl DoFn for FormatSession {
    type In = (String, i64);
    type Out = String;
    fn process(&mut self, (user, n): &(String, i64), ctx: &mut ProcessContext<'_, String>) {
        if let BoundedWindow::Interval { start, end } = ctx.window() {
            let len = (end.millis() - start.millis()) / 1000;
            ctx.output(format!(
                "{user} {} +{:02}:{:02}:{:02} events={n}",
                rfc3339(*start),
                len / 3600,
                len / 60 % 60,
                len % 60
            ));
        }
    }
}

fn rfc3339(t: Timestamp) -> String {
    let secs = t.millis().div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let p = Pipeline::new(args.pipeline);
    let events = match &args.input {
        Some(glob) => p.apply("ReadEvents", ReadJsonLines::<Event>::new(glob.clone())),
        None => p
            .generate_sequence("EventIds", 0, args.generate)
            .map("GenerateEvents", |i: &i64| generated_event(*i)),
    };
    events
        .with_timestamps("EventTime", |e: &Event| Timestamp::from_millis(e.ts_ms))
        .map("ByUser", |e: &Event| e.user.clone())
        .window_into(
            "Sessions",
            WindowFn::sessions(Duration::from_secs(args.gap_minutes * 60)),
        )
        .apply("EventsPerSession", Count::per_element())
        .par_do("Format", ParDo::of(FormatSession))
        .apply("Write", WriteToText::new(args.output.clone()));
    p.run()?;
    eprintln!("user_sessions: wrote {}-00000-of-00001", args.output);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        assert_eq!(
            rfc3339(Timestamp::from_millis(1_700_000_000_000)),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(rfc3339(Timestamp::from_millis(0)), "1970-01-01T00:00:00Z");
    }
}
