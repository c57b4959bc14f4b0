//! Tools from an MCP server in the stock agent.
//!
//! ```sh
//! scripts/setup-tests   # installs the reference server into tests/mcp
//! cargo run --features mcp --example mcp
//! cargo run --features mcp --example mcp -- --model openai:gpt-4o-mini "Add 2 and 3 with get-sum"
//! ```
//!
//! Starts the reference server `@modelcontextprotocol/server-everything`
//! (pinned in tests/mcp) as a child process, or connects to `--http URL`
//! (a streamable-HTTP endpoint such as `http://127.0.0.1:3001/mcp`), lists
//! its tools and calls `echo`. With `--model SPEC` (any model string, such
//! as `openai:gpt-4o-mini` or `local:PATH.gguf` with `--features local`)
//! it then runs the stock agent on the question with the server's tools.

use std::process::ExitCode;

use statewise::console::Console;
use statewise::spec::from_spec;
use statewise::tool::mcp::McpServer;
use statewise::tool::ToolContext;
use statewise::Env;

const SERVER: &str = "tests/mcp/node_modules/.bin/mcp-server-everything";

#[tokio::main]
async fn main() -> ExitCode {
    let (mut http, mut model, mut question) = (None, None, Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--http" => http = args.next(),
            "--model" => model = args.next(),
            _ => question.push(arg),
        }
    }
    let server = match &http {
        Some(url) => McpServer::http(url).await,
        None => {
            let mut command = tokio::process::Command::new("node");
            command.arg(SERVER).arg("stdio");
            McpServer::stdio(command).await
        }
    };
    let server = match server {
        Ok(server) => server,
        Err(e) => {
            eprintln!("{e}\n(run scripts/setup-tests to install the reference server)");
            return ExitCode::FAILURE;
        }
    };
    // Offers the server's tools as they are at each request.
    let toolbox = server.toolbox();
    println!("tools: {}", toolbox.names().join(", "));
    let echoed = toolbox
        .call(
            "echo",
            serde_json::json!({"message": "hello from statewise"}),
            ToolContext::default(),
        )
        .await;
    match echoed {
        Ok(reply) => println!("echo: {reply}"),
        Err(e) => {
            eprintln!("echo failed: {e}");
            return ExitCode::FAILURE;
        }
    }

    let Some(spec) = model else {
        return ExitCode::SUCCESS;
    };
    let model = match from_spec(&spec) {
        Ok(model) => model,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let question = match question.is_empty() {
        true => "Use get-sum to add 2 and 3.".to_owned(),
        false => question.join(" "),
    };
    let machine = statewise_states::agent(model, toolbox);
    let console = Console::new().verbose(true);
    let stdout = std::io::stdout();
    match console
        .print(machine.stream(Env::from_user(question)), stdout.lock())
        .await
    {
        Ok(_) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("mcp: run failed: {failure}");
            ExitCode::FAILURE
        }
    }
}
