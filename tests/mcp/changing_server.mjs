// An MCP server whose tool list changes while it runs, for the tests of
// list_changed: it starts with one tool, `add_tool`; calling it registers
// `late_tool`, and the SDK then sends notifications/tools/list_changed.
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";

const server = new McpServer({ name: "changing", version: "1.0.0" });

server.registerTool(
  "add_tool",
  { description: "Adds the tool late_tool.", inputSchema: {} },
  async () => {
    server.registerTool(
      "late_tool",
      {
        description: "Greets someone.",
        inputSchema: { who: z.string().describe("Whom to greet") },
      },
      async ({ who }) => ({ content: [{ type: "text", text: `Hello, ${who}!` }] }),
    );
    return { content: [{ type: "text", text: "late_tool added" }] };
  },
);

await server.connect(new StdioServerTransport());
