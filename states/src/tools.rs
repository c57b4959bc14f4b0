//! Stock tools: a calculator and a clock.

use serde_json::json;

use crate::Example;

/// Evaluates an arithmetic expression with + - * / ^, parentheses and percentages (20% of 150).
///
/// Unary minus and decimal numbers too. The [`Calculator`] tool:
///
/// ```
/// # futures::executor::block_on(async {
/// use statewise::tool::Tool;
/// use statewise_states::tools::{Calculator, CalculatorArgs};
///
/// let v = Calculator.call(CalculatorArgs { expression: "2 * (3 + 4) ^ 2".into() }, Default::default()).await?;
/// assert_eq!(v.0, 98.0);
/// // A whole number is written without a fraction: "98", not "98.0".
/// assert_eq!(serde_json::to_string(&v).unwrap(), "98");
/// # Ok::<(), statewise_states::tools::CalcError>(())
/// # }).unwrap();
/// ```
#[statewise::tool]
pub async fn calculator(
    /// e.g. (2 + 3) * 4
    expression: String,
) -> Result<Calculated, CalcError> {
    evaluate(&expression)
}

/// A [`Calculator`] result. It serializes as a whole number when it is
/// one (`391`, not `391.0`): models copy the observation into the answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calculated(pub f64);

impl serde::Serialize for Calculated {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Past 2^53 an f64 no longer holds every integer: written as is.
        const EXACT: f64 = 9_007_199_254_740_992.0;
        match self.0 {
            v if v.fract() == 0.0 && v.abs() < EXACT => serializer.serialize_i64(v as i64),
            v => serializer.serialize_f64(v),
        }
    }
}

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalcError {
    /// The expression is not well formed.
    #[error("syntax error at character {at}: {message}")]
    Syntax {
        /// 0-based character position.
        at: usize,
        /// What was expected.
        message: String,
    },
    /// Division by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// The result is not a finite number.
    #[error("the result is not a finite number")]
    NotFinite,
}

impl Calculator {
    /// Requests that need the calculator, with its arguments, for
    /// [`Decide`](crate::Decide)'s few-shot prompt.
    pub fn examples() -> Vec<Example> {
        [
            ("What is 23 + 19?", "23 + 19"),
            ("How much is 6 times 9?", "6 * 9"),
            ("What is 5 squared?", "5 ^ 2"),
            ("Subtract 17 from 60.", "60 - 17"),
            ("What is 100 divided by 8?", "100 / 8"),
            ("What is 30% of 70?", "30% of 70"),
            (
                "A bag holds 9 apples. How many apples are in 4 bags?",
                "9 * 4",
            ),
        ]
        .into_iter()
        .map(|(request, expression)| {
            Example::tool(request, "calculator", json!({ "expression": expression }))
        })
        .collect()
    }
}

/// The value of an arithmetic expression.
fn evaluate(expression: &str) -> Result<Calculated, CalcError> {
    let chars: Vec<char> = expression.chars().collect();
    let mut p = Parser {
        chars: &chars,
        pos: 0,
    };
    let v = p.sum()?;
    p.skip_ws();
    if p.pos < chars.len() {
        return Err(p.error("an operator or the end"));
    }
    if v.is_finite() {
        Ok(Calculated(v))
    } else {
        Err(CalcError::NotFinite)
    }
}

/// Returns the current date, time (UTC) and weekday.
///
/// The [`Clock`] tool:
///
/// ```
/// # futures::executor::block_on(async {
/// use statewise::tool::Tool;
/// use statewise_states::tools::{Clock, ClockArgs};
///
/// let now = Clock.call(ClockArgs {}, Default::default()).await.unwrap();
/// assert!(now.utc.ends_with('Z') && now.utc.len() == 20, "{}", now.utc);
/// # });
/// ```
#[statewise::tool]
pub async fn clock() -> Result<Now, ClockError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| ClockError)?
        .as_secs();
    Ok(now_from_unix(secs))
}

/// What [`Clock`] returns. The model reads it as one sentence
/// (`It is Friday, 4 December 2026, 21:13 UTC.`):
/// small models copy the weekday, month or time from it where they misread
/// a JSON object of the same facts.
#[derive(Debug, Clone, PartialEq)]
pub struct Now {
    /// RFC 3339 date and time, e.g. `2026-11-21T18:30:05Z`.
    pub utc: String,
    /// The weekday, e.g. `Saturday`.
    pub weekday: &'static str,
    /// The date in words, e.g. `Saturday 21 November 2026`: small models
    /// read it more reliably than the RFC 3339 form.
    pub date: String,
    /// The time of day, e.g. `18:30 UTC`.
    pub time: String,
}

impl std::fmt::Display for Now {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (weekday, rest) = self
            .date
            .split_once(' ')
            .unwrap_or((self.weekday, &self.date));
        write!(f, "It is {weekday}, {rest}, {}.", self.time)
    }
}

impl serde::Serialize for Now {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The clock is before 1970.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the system clock is set before 1970")]
pub struct ClockError;

impl Clock {
    /// Requests that need the clock, for [`Decide`](crate::Decide)'s
    /// few-shot prompt.
    pub fn examples() -> Vec<Example> {
        [
            "What's the time right now?",
            "Which year are we in?",
            "Is it a weekday or the weekend today?",
        ]
        .into_iter()
        .map(|request| Example::tool(request, "clock", json!({})))
        .collect()
    }
}

/// The calendar date and time of a Unix timestamp (proleptic Gregorian, UTC).
fn now_from_unix(secs: u64) -> Now {
    const WEEKDAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let weekday = WEEKDAYS[days.rem_euclid(7) as usize];
    Now {
        date: format!("{weekday} {day} {} {year}", MONTHS[(month - 1) as usize]),
        time: format!("{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60),
        utc: format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        ),
        weekday,
    }
}

struct Parser<'a> {
    chars: &'a [char],
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.chars.get(self.pos).copied()
    }

    fn error(&self, expected: &str) -> CalcError {
        let found = self
            .chars
            .get(self.pos)
            .map_or("the end".to_owned(), |c| format!("`{c}`"));
        CalcError::Syntax {
            at: self.pos,
            message: format!("expected {expected}, found {found}"),
        }
    }

    fn sum(&mut self) -> Result<f64, CalcError> {
        let mut v = self.product()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.pos += 1;
            let rhs = self.product()?;
            v = if op == '+' { v + rhs } else { v - rhs };
        }
        Ok(v)
    }

    /// Whether the word `word` comes next (then it is taken).
    fn word(&mut self, word: &str) -> bool {
        self.skip_ws();
        let end = self.pos + word.chars().count();
        let matches = self
            .chars
            .get(self.pos..end)
            .is_some_and(|w| w.iter().copied().eq(word.chars()))
            && !self.chars.get(end).is_some_and(|c| c.is_alphanumeric());
        if matches {
            self.pos = end;
        }
        matches
    }

    fn product(&mut self) -> Result<f64, CalcError> {
        let mut v = self.power()?;
        loop {
            // `20% of 150`, `12 x 12`: as people (and small models) write.
            let op = match self.peek() {
                Some(op @ ('*' | '/' | '×' | '÷')) => {
                    self.pos += 1;
                    op
                }
                _ if self.word("of") || self.word("x") => '*',
                _ => break,
            };
            let rhs = self.power()?;
            v = if matches!(op, '*' | '×') {
                v * rhs
            } else if rhs == 0.0 {
                return Err(CalcError::DivisionByZero);
            } else {
                v / rhs
            };
        }
        Ok(v)
    }

    fn power(&mut self) -> Result<f64, CalcError> {
        let mut base = self.unary()?;
        if self.peek() == Some('%') {
            self.pos += 1;
            base /= 100.0;
        }
        if self.peek() == Some('^') {
            self.pos += 1;
            // Right-associative: 2^3^2 = 2^(3^2).
            return Ok(base.powf(self.power()?));
        }
        Ok(base)
    }

    fn unary(&mut self) -> Result<f64, CalcError> {
        match self.peek() {
            Some('-') => {
                self.pos += 1;
                Ok(-self.unary()?)
            }
            Some('+') => {
                self.pos += 1;
                self.unary()
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Result<f64, CalcError> {
        match self.peek() {
            Some('(') => {
                self.pos += 1;
                let v = self.sum()?;
                if self.peek() != Some(')') {
                    return Err(self.error("`)`"));
                }
                self.pos += 1;
                Ok(v)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                let start = self.pos;
                while self
                    .chars
                    .get(self.pos)
                    .is_some_and(|c| c.is_ascii_digit() || *c == '.' || *c == '_')
                {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos]
                    .iter()
                    .filter(|c| **c != '_')
                    .collect();
                text.parse().map_err(|_| CalcError::Syntax {
                    at: start,
                    message: format!("`{text}` is not a number"),
                })
            }
            _ => Err(self.error("a number or `(`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use statewise::tool::{Tool, ToolContext};

    #[test]
    fn the_model_is_shown_what_it_was_shown_before() {
        let shown = |t: &dyn statewise::tool::DynTool| {
            let spec = t.spec();
            (spec.description, spec.parameters.to_string())
        };
        assert_eq!(
            shown(&Calculator),
            (
                "Evaluates an arithmetic expression with + - * / ^, parentheses and percentages (20% of 150).".to_owned(),
                r#"{"type":"object","properties":{"expression":{"type":"string","description":"e.g. (2 + 3) * 4"}},"required":["expression"]}"#.to_owned()
            )
        );
        assert_eq!(
            shown(&Clock),
            (
                "Returns the current date, time (UTC) and weekday.".to_owned(),
                r#"{"type":"object","properties":{}}"#.to_owned()
            )
        );
    }

    async fn eval(e: &str) -> Result<f64, CalcError> {
        Calculator
            .call(
                CalculatorArgs {
                    expression: e.into(),
                },
                ToolContext::default(),
            )
            .await
            .map(|c| c.0)
    }

    #[test]
    fn whole_results_are_written_without_a_fraction() {
        let json = |v: f64| serde_json::to_string(&Calculated(v)).unwrap();
        assert_eq!(json(391.0), "391");
        assert_eq!(json(-0.5), "-0.5");
        assert_eq!(json(1e300), "1e+300");
        assert_eq!(json(-42.0), "-42");
    }

    #[tokio::test]
    async fn arithmetic() {
        for (e, want) in [
            ("1 + 2 * 3", 7.0),
            ("(1 + 2) * 3", 9.0),
            ("2 ^ 3 ^ 2", 512.0),
            ("-3 + 10 / 4", -0.5),
            ("1_000 * 2", 2000.0),
            ("6 × 7", 42.0),
        ] {
            assert_eq!(eval(e).await, Ok(want), "{e}");
        }
    }

    #[test]
    fn unix_times_to_dates() {
        assert_eq!(
            now_from_unix(0),
            Now {
                utc: "1970-01-01T00:00:00Z".into(),
                weekday: "Thursday",
                date: "Thursday 1 January 1970".into(),
                time: "00:00 UTC".into(),
            }
        );
        assert_eq!(now_from_unix(951_782_400).utc, "2000-02-29T00:00:00Z");
        assert_eq!(now_from_unix(951_782_400).date, "Tuesday 29 February 2000");
        assert_eq!(
            now_from_unix(1_795_287_318),
            Now {
                utc: "2026-11-21T18:55:18Z".into(),
                weekday: "Saturday",
                date: "Saturday 21 November 2026".into(),
                time: "18:55 UTC".into(),
            }
        );
        assert_eq!(now_from_unix(4_102_444_799).utc, "2099-12-31T23:59:59Z");
    }

    #[tokio::test]
    async fn errors() {
        assert_eq!(eval("1 / 0").await, Err(CalcError::DivisionByZero));
        assert!(matches!(
            eval("2 +").await,
            Err(CalcError::Syntax { at: 3, .. })
        ));
        assert!(matches!(eval("(1").await, Err(CalcError::Syntax { .. })));
        assert!(matches!(
            eval("1 2").await,
            Err(CalcError::Syntax { at: 2, .. })
        ));
        assert!(matches!(
            eval("1..2").await,
            Err(CalcError::Syntax { at: 0, .. })
        ));
        assert_eq!(eval("10 ^ 400").await, Err(CalcError::NotFinite));
    }
}
