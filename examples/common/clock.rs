//! The clock's placeholders in accepted answers (`{year}`, `{month}`,
//! `{day}`, `{weekday}`, `{date}`, `{hour}`), filled from the stock clock
//! tool so that a date question is checked against what the agent saw.

use futures::FutureExt;
use statewise::tool::Tool;
use statewise_states::tools::{Clock, ClockArgs};

/// Each placeholder's name and value now: `{month}` is the English name,
/// `{day}` has no leading zero, `{date}` is `YYYY-MM-DD`, `{hour}` two UTC
/// digits.
pub fn clock_vars() -> Vec<(String, String)> {
    // The clock reads the system time without waiting on anything.
    let Some(Ok(now)) = Clock.call(ClockArgs {}, Default::default()).now_or_never() else {
        return Vec::new();
    };
    let (date, time) = now.utc.split_once('T').unwrap_or_default();
    // `now.date` in words: `Monday 30 November 2026`.
    let words: Vec<&str> = now.date.split(' ').collect();
    let word = |i: usize| words.get(i).copied().unwrap_or_default().to_owned();
    [
        ("year", date.get(..4).unwrap_or_default().to_owned()),
        ("month", word(2)),
        ("day", word(1)),
        ("weekday", now.weekday.to_owned()),
        ("date", date.to_owned()),
        ("hour", time.get(..2).unwrap_or_default().to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}
