//! The serve example's page in a real browser: Debian's Chromium, headless,
//! driven by playwright-core. The screenshot is saved under
//! target/screenshots/ (a CI artifact).

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::node;

/// Kills the example when the test ends, pass or fail.
struct Killed(tokio::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

#[tokio::test]
async fn the_page_streams_an_answer_shows_tool_calls_and_approves_one() {
    page_flow(&[], "serve-page.png").await;
}

/// With native tool calls (as OpenAI and Anthropic models make them) the
/// answer is the page's text, streamed, not thinking.
#[tokio::test]
async fn the_page_streams_a_native_tool_callers_answer_as_text() {
    page_flow(&["--native"], "serve-page-native.png").await;
}

/// The serve example started with `args`, its page driven through a tool
/// call, a streamed answer and an approval; the screenshot saved as `shot`.
async fn page_flow(args: &[&str], shot: &str) {
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(
        chromium.exists(),
        "{} is missing: run scripts/setup-tests (it installs Debian's chromium)",
        chromium.display()
    );
    let mut child = tokio::process::Command::new(crate::support::example("serve"))
        .args(["--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the serve example starts");
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the example prints its address");
        if let Some(url) = line.strip_prefix("serving on ") {
            break url.to_owned();
        }
    };
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let screenshot = shots.join(shot);
    let _ = std::fs::remove_file(&screenshot);
    let out = node(
        "browser.mjs",
        &json!({"url": url, "screenshot": screenshot, "chromium": chromium}),
    )
    .await;
    drop(child);
    assert!(out.get("error").is_none(), "{out}");
    assert!(
        out["firstAnswer"]
            .as_str()
            .unwrap()
            .starts_with("The clock says: It is "),
        "{out}"
    );
    assert!(
        out["answerLengthsSeen"].as_u64().unwrap() >= 2,
        "the answer streamed in pieces: {out}"
    );
    assert_eq!(out["firstToolCall"], "→ clock", "{out}");
    assert!(
        out["firstToolResult"].as_str().unwrap().ends_with("UTC."),
        "{out}"
    );
    assert_eq!(out["secondToolCall"], "→ send_email", "{out}");
    // The approved call's result shows on its own card, in its own turn.
    assert_eq!(
        out["toolResults"],
        json!(["← sent to team@example.com (The release is out)"]),
        "{out}"
    );
    assert_eq!(out["approvalQuestion"], "Run send_email?");
    assert!(
        out["approvalCall"]
            .as_str()
            .unwrap()
            .contains("team@example.com"),
        "{out}"
    );
    assert!(
        out["lastAnswer"]
            .as_str()
            .unwrap()
            .starts_with("Done: the email was sent to team@example.com"),
        "{out}"
    );
    let png = std::fs::read(&screenshot).expect("the screenshot was saved");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}
