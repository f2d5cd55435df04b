-- pgbench script (tests/bench/bench.py, part "G on PostgreSQL"): the write pattern of one
-- submission without the gateway, on taskgate's own tables, as the floor G on PostgreSQL is
-- compared with: the pending row committed, then the upstream call, its two runs and the
-- final state in a second transaction. The team (id 1) and token 'tok_floor' exist; ids
-- are made of the client and a random number (pgbench's variables are numbers).
\set r random(1, 1000000000000000)
BEGIN;
INSERT INTO submissions (id, team_id, token_id, request_id, received_at, remote_addr,
    interface, taskgroup_id, num_inputs, state, request)
    VALUES ('sub_' || :client_id || '_' || :r, 1, 'tok_floor', 'req',
    '2026-12-02T00:00:00.000Z', '127.0.0.1', 'simplified', 'tgrp_floor', 2, 'pending',
    '{"inputs":["q","r"]}');
COMMIT;
BEGIN;
INSERT INTO upstream_calls (submission_id, seq, operation, method, path, first_input,
    num_inputs, started_at, finished_at, duration_ms, outcome, http_status)
    VALUES ('sub_' || :client_id || '_' || :r, 0, 'add_runs', 'POST',
    '/v1/tasks/groups/tgrp_floor/runs', 0, 2, '2026-12-02T00:00:00.000Z',
    '2026-12-02T00:00:00.001Z', 1, 'ok', 200);
INSERT INTO runs (run_id, submission_id, call_seq, input_index, processor)
    VALUES ('trun_a' || :client_id || '_' || :r, 'sub_' || :client_id || '_' || :r, 0, 0,
    'base'), ('trun_b' || :client_id || '_' || :r, 'sub_' || :client_id || '_' || :r, 0, 1,
    'base');
UPDATE submissions SET state = 'accepted', http_status = 200, upstream_status = 200,
    completed_at = '2026-12-02T00:00:00.002Z'
    WHERE id = 'sub_' || :client_id || '_' || :r AND state = 'pending';
COMMIT;
