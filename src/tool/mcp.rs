//! Tools from MCP servers (feature `mcp`): [`McpServer`] connects to a
//! server through the official `rmcp` SDK, over stdio (a child process) or
//! streamable HTTP, and hands out its tools as [`McpTool`]s that join a
//! [`ToolRegistry`] like any other.
//!
//! The server's tool list is read at connection and kept; each
//! `notifications/tools/list_changed` from the server has it read again in
//! the background, and a toolbox made with [`McpServer::toolbox`] (a
//! [`ToolSource`]) offers the list as it is at each model request.
//! Arguments are checked against the server's input schema by the toolbox
//! before they are sent, like any tool's.

use std::borrow::Cow;
use std::sync::{Arc, PoisonError, RwLock, Weak};

use futures::future::BoxFuture;
use futures::FutureExt;
use rmcp::model::{CallToolRequestParams, ContentBlock};
use rmcp::service::{NotificationContext, RoleClient, RunningService};
use rmcp::ServiceExt;
use serde_json::Value;
use tokio::sync::watch;

use super::{DynTool, ToolContext, ToolError, ToolRegistry, ToolSource, ToolSpec, Toolbox};

/// Why talking to an MCP server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum McpError {
    /// The server could not be started or reached, or did not complete the
    /// MCP handshake.
    #[error("could not connect to MCP server `{server}`: {message} (check the command or URL, and that the server speaks MCP)")]
    Connect {
        /// The command or URL.
        server: String,
        /// What went wrong.
        message: String,
    },
    /// A request to the server failed (the connection closed, a protocol
    /// error, an error reply).
    #[error("MCP server `{server}` failed: {source}")]
    Service {
        /// The command or URL.
        server: String,
        /// The SDK's error.
        #[source]
        source: rmcp::ServiceError,
    },
}

/// Hears the server's notifications: a changed tool list bumps a counter.
struct Listener {
    changes: watch::Sender<u64>,
}

impl rmcp::ClientHandler for Listener {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.changes.send_modify(|n| *n += 1);
    }
}

/// The live connection: its tools keep it open, so a registry outlives the
/// [`McpServer`] it came from.
struct Session {
    /// The command or URL, for messages.
    server: String,
    service: RunningService<RoleClient, Listener>,
}

/// What the handles of one [`McpServer`] share.
struct Connection {
    session: Arc<Session>,
    /// The tools as last listed.
    current: RwLock<Arc<ToolRegistry>>,
    changes: watch::Receiver<u64>,
    /// How many times the list was read again after a change.
    refreshed: watch::Sender<u64>,
}

/// A connection to one MCP server, whose tools join a toolbox. Its tool
/// list is read at connection and again each time the server says it
/// changed (`notifications/tools/list_changed`); [`McpServer::toolbox`]
/// offers the tools as they are at each request.
///
/// ```no_run
/// # async fn demo() -> Result<(), statewise::tool::mcp::McpError> {
/// use statewise::tool::mcp::McpServer;
///
/// let mut command = tokio::process::Command::new("npx");
/// command.args(["-y", "@modelcontextprotocol/server-everything"]);
/// let server = McpServer::stdio(command).await?;
/// let toolbox = server.toolbox();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct McpServer {
    connection: Arc<Connection>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("server", &self.connection.session.server)
            .finish_non_exhaustive()
    }
}

impl McpServer {
    /// Starts `command` as a child process and talks MCP over its stdin and
    /// stdout. The process is stopped once this server, its toolboxes and
    /// its tools are all dropped.
    pub async fn stdio(command: tokio::process::Command) -> Result<Self, McpError> {
        let server = format!("{:?}", command.as_std().get_program());
        let transport =
            rmcp::transport::TokioChildProcess::new(command).map_err(|e| McpError::Connect {
                server: server.clone(),
                message: e.to_string(),
            })?;
        Self::serve(server, transport).await
    }

    /// Connects to the streamable-HTTP endpoint at `url` (such as
    /// `http://127.0.0.1:3001/mcp`).
    pub async fn http(url: &str) -> Result<Self, McpError> {
        let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(url.to_owned());
        Self::serve(url.to_owned(), transport).await
    }

    async fn serve<T, E, A>(server: String, transport: T) -> Result<Self, McpError>
    where
        T: rmcp::transport::IntoTransport<RoleClient, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let (sender, changes) = watch::channel(0);
        let service = Listener { changes: sender }
            .serve(transport)
            .await
            .map_err(|e| McpError::Connect {
                server: server.clone(),
                message: e.to_string(),
            })?;
        let session = Arc::new(Session { server, service });
        let current = RwLock::new(Arc::new(list(&session).await?));
        let connection = Arc::new(Connection {
            session,
            current,
            changes: changes.clone(),
            refreshed: watch::channel(0).0,
        });
        tokio::spawn(refresh_on_change(Arc::downgrade(&connection), changes));
        Ok(McpServer { connection })
    }

    /// The server's tools as last listed.
    pub fn registry(&self) -> Arc<ToolRegistry> {
        self.connection.current()
    }

    /// A toolbox offering the server's tools as they are at each request.
    pub fn toolbox(&self) -> Toolbox {
        Toolbox::live(Arc::new(self.clone()))
    }

    /// Lists the server's tools now (as happens by itself when the server
    /// says they changed) and keeps the list.
    pub async fn refresh(&self) -> Result<Arc<ToolRegistry>, McpError> {
        self.connection.refresh().await
    }

    /// How many times the server said its tool list changed; `changed()`
    /// on the receiver waits for the next time.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.connection.changes.clone()
    }

    /// How many times the tool list was read again after a change.
    pub fn refreshes(&self) -> watch::Receiver<u64> {
        self.connection.refreshed.subscribe()
    }
}

impl ToolSource for McpServer {
    fn current(&self) -> Arc<ToolRegistry> {
        self.connection.current()
    }
}

impl Connection {
    fn current(&self) -> Arc<ToolRegistry> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    async fn refresh(&self) -> Result<Arc<ToolRegistry>, McpError> {
        let registry = Arc::new(list(&self.session).await?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&registry);
        Ok(registry)
    }
}

/// Reads the list again after each change the server announces, for as
/// long as the connection is in use.
async fn refresh_on_change(connection: Weak<Connection>, mut changes: watch::Receiver<u64>) {
    // Ends when the connection closes (the sender goes with its listener).
    while changes.changed().await.is_ok() {
        let Some(connection) = connection.upgrade() else {
            return;
        };
        match connection.refresh().await {
            Ok(_) => connection.refreshed.send_modify(|n| *n += 1),
            Err(error) => {
                tracing::warn!(%error, "could not read the MCP server's changed tool list")
            }
        }
    }
}

/// The session's tools, listed now.
async fn list(session: &Arc<Session>) -> Result<ToolRegistry, McpError> {
    let tools = session
        .service
        .list_all_tools()
        .await
        .map_err(|source| McpError::Service {
            server: session.server.clone(),
            source,
        })?;
    let mut registry = ToolRegistry::new();
    for tool in tools {
        registry.register(McpTool {
            spec: ToolSpec {
                name: tool.name.to_string(),
                description: tool.description.map(Cow::into_owned).unwrap_or_default(),
                parameters: Value::Object((*tool.input_schema).clone()),
            },
            session: Arc::clone(session),
        });
    }
    Ok(registry)
}

/// One tool of an MCP server: calls go to the server.
#[derive(Clone)]
pub struct McpTool {
    spec: ToolSpec,
    session: Arc<Session>,
}

impl std::fmt::Debug for McpTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTool")
            .field("name", &self.spec.name)
            .field("server", &self.session.server)
            .finish()
    }
}

/// The server's reply as the observation's content: its structured content
/// if it sent some, else its text (one block as a string), else the
/// content blocks as JSON.
fn content_of(structured: Option<Value>, blocks: Vec<ContentBlock>) -> Value {
    if let Some(value) = structured {
        return value;
    }
    let texts: Option<Vec<String>> = blocks
        .iter()
        .map(|b| match b {
            ContentBlock::Text(t) => Some(t.text.clone()),
            _ => None,
        })
        .collect();
    match texts {
        Some(texts) if !texts.is_empty() => Value::String(texts.join("\n")),
        _ => serde_json::to_value(&blocks).unwrap_or(Value::Null),
    }
}

/// A tool error reply's text, as the error the model sees.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Reported(String);

impl DynTool for McpTool {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    fn call_json(
        &self,
        arguments: Value,
        ctx: ToolContext,
    ) -> BoxFuture<'_, Result<Value, ToolError>> {
        async move {
            let tool = || self.spec.name.clone();
            let arguments = match arguments {
                Value::Object(map) => map,
                Value::Null => Default::default(),
                other => {
                    return Err(ToolError::InvalidArguments {
                        tool: tool(),
                        field: None,
                        message: format!("expected an object, got {other}"),
                    })
                }
            };
            let request = CallToolRequestParams::new(self.spec.name.clone()).with_arguments(arguments);
            // Dropping the request tells the server to cancel it (rmcp
            // sends notifications/cancelled).
            let reply = tokio::select! {
                reply = self.session.service.call_tool(request) => reply,
                () = ctx.cancel.cancelled() => {
                    return Err(ToolError::Failed {
                        tool: tool(),
                        source: Box::new(Reported("cancelled: the run no longer waits for it".into())),
                    })
                }
            };
            let reply = reply.map_err(|e| ToolError::Failed {
                tool: tool(),
                source: Box::new(McpError::Service {
                    server: self.session.server.clone(),
                    source: e,
                }),
            })?;
            let is_error = reply.is_error.unwrap_or(false);
            let content = content_of(reply.structured_content, reply.content);
            if is_error {
                let message = match content {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                return Err(ToolError::Failed {
                    tool: tool(),
                    source: Box::new(Reported(message)),
                });
            }
            Ok(content)
        }
        .boxed()
    }
}
