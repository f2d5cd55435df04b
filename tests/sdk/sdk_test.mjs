// Drives taskgate with an official Parallel TypeScript SDK exactly as a service would, with
// only the base URL and the key changed. Run by tests/integration/test_sdk.py, which starts
// the stack and checks the records afterwards.
//
//   TG_BASE_URL=http://127.0.0.1:PORT TG_TOKEN=tg_… node sdk_test.mjs 1|0.3
//
// Asserts the SDK's return values and typed errors; prints one JSON line with what the
// Python side checks in the database ({"taskgroup_id":…, "run_ids":[…]}).
import assert from 'node:assert/strict';

const generation = process.argv[2];
const baseURL = process.env.TG_BASE_URL;
const token = process.env.TG_TOKEN;
assert.ok(baseURL && token, 'TG_BASE_URL and TG_TOKEN must be set');

const mod = generation === '1' ? await import('parallel-web-1')
  : generation === '0.3' ? await import('parallel-web-03')
  : null;
assert.ok(mod, 'usage: node sdk_test.mjs 1|0.3');
const Parallel = mod.default;

// maxRetries 0: a test must see the first answer, not the SDK's retry of it.
const client = new Parallel({ apiKey: token, baseURL, maxRetries: 0, timeout: 60_000 });
// The task-group resource lives at the top level in 1.x and under beta in 0.3.x.
const groups = generation === '1' ? client.taskGroup : client.beta.taskGroup;

const group = await groups.create({ metadata: { suite: 'sdk-' + generation } });
assert.match(group.taskgroup_id, /^tgrp_/);
assert.equal(group.metadata?.suite, 'sdk-' + generation);

const added = await groups.addRuns(group.taskgroup_id, {
  inputs: [
    { input: 'What is the capital of France?', processor: 'base' },
    { input: { company: 'Example Inc' }, processor: 'core', metadata: { row: 2 } },
  ],
  default_task_spec: { output_schema: { type: 'text', description: 'a short answer' } },
});
assert.equal(added.run_ids.length, 2);
for (const id of added.run_ids) assert.match(id, /^trun_/);

const status = await groups.retrieve(group.taskgroup_id);
assert.equal(status.taskgroup_id, group.taskgroup_id);
assert.equal(status.status.num_task_runs, 2);

// One run: 1.x through the group, both through the run path.
const [first, second] = added.run_ids;
if (generation === '1') {
  const run = await groups.retrieveRun(first, { taskgroup_id: group.taskgroup_id });
  assert.equal(run.run_id, first);
  assert.equal(run.processor, 'base');
}
const run2 = await client.taskRun.retrieve(second);
assert.equal(run2.run_id, second);

// The runs stream: every run of the group, as server-sent events through the gateway.
const stream = await groups.getRuns(group.taskgroup_id, { include_input: true });
const seen = new Set();
for await (const event of stream) {
  if (event.type === 'task_run.state' && event.run) seen.add(event.run.run_id);
}
assert.deepEqual([...seen].sort(), [...added.run_ids].sort());

// A run's result, waited for through the gateway.
const result = await client.taskRun.result(first, { timeout: 30 });
assert.equal(result.run.run_id, first);
assert.equal(result.run.status, 'completed');
assert.ok(result.output, 'a completed run has an output');

// A wrong token raises the SDK's authentication error.
const stranger = new Parallel({ apiKey: 'tg_' + '0'.repeat(48), baseURL, maxRetries: 0 });
const strangerGroups = generation === '1' ? stranger.taskGroup : stranger.beta.taskGroup;
await assert.rejects(strangerGroups.create({}), mod.AuthenticationError);

// An invalid body raises its unprocessable-entity error.
await assert.rejects(
  groups.addRuns(group.taskgroup_id, { inputs: [{ input: 'x', processor: 42 }] }),
  (err) => {
    assert.ok(err instanceof mod.UnprocessableEntityError, String(err));
    assert.equal(err.status, 422);
    return true;
  });

// Another team's group (or one that does not exist) is a NotFoundError.
await assert.rejects(groups.retrieve('tgrp_not_ours'), mod.NotFoundError);

console.log(JSON.stringify({ taskgroup_id: group.taskgroup_id, run_ids: added.run_ids }));
