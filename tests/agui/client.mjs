// Runs the official AG-UI TypeScript client (`HttpAgent.runAgent`) against
// a server, step by step, and prints what it ended with as JSON.
//
//   node client.mjs '<scenario>'
//
// A scenario: { url, threadId, messages?, state?, headers?, steps: [step] }, a step:
// { runId, url?, tools?, resume?: { status, payload }, toolResult? }.
// `resume` answers every interrupt the last run left pending; `toolResult`
// answers every client tool call it left pending with that text. For each
// step the output has the run's result, pending interrupts and tool calls,
// and the agent's messages and state, or the error the client raised
// (its event verification included).
import { HttpAgent } from "@ag-ui/client";

const scenario = JSON.parse(process.argv[2]);
const agent = new HttpAgent({
  url: scenario.url,
  threadId: scenario.threadId,
  initialMessages: scenario.messages ?? [],
  initialState: scenario.state ?? {},
  headers: scenario.headers ?? {},
});
const runs = [];
let pendingToolCallIds = [];
for (const step of scenario.steps) {
  if (step.url) agent.url = step.url;
  const params = { runId: step.runId, tools: step.tools ?? [] };
  if (step.resume) {
    params.resume = agent.pendingInterrupts.map((i) => ({
      interruptId: i.id,
      status: step.resume.status ?? "resolved",
      payload: step.resume.payload,
    }));
  }
  if (step.toolResult !== undefined) {
    for (const id of pendingToolCallIds) {
      agent.addMessage({ id: `result-${id}`, role: "tool", toolCallId: id, content: step.toolResult });
    }
  }
  pendingToolCallIds = [];
  try {
    const run = await agent.runAgent(params, {
      onRunFinishedEvent(event) {
        pendingToolCallIds = event.pendingToolCallIds ?? [];
      },
    });
    runs.push({
      result: run.result ?? null,
      pendingInterrupts: agent.pendingInterrupts,
      pendingToolCallIds,
      messages: agent.messages,
      state: agent.state,
    });
  } catch (e) {
    runs.push({ error: String(e && e.message ? e.message : e) });
  }
}
console.log(JSON.stringify({ runs }));
