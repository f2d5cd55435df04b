/* Merging request defaults and building upstream add-runs bodies. A "template" is one
 * upstream run input without its "input" (processor, metadata, source_policy, task_spec,
 * webhook, …): the shape presets are stored in and the shape merges work on. */
#ifndef TG_MERGE_H
#define TG_MERGE_H

#include <stddef.h>

#include <json-c/json.h>

#include "tg_core.h"
#include "tg_run_tag.h" /* TG_RUN_TAG_KEY, which tg_merge_add_runs_tagged writes */

/* Merges over onto a copy of base and returns the copy (a new reference; NULL when out
 * of memory). Objects merge key by key, recursively; any other value, lists included,
 * replaces; a JSON null in over removes the key. base and over are not changed; either
 * may be NULL. */
json_object *tg_merge(json_object *base, json_object *over);

/* The simplified submission fields that are not template fields. */
int tg_merge_field_is_control(const char *key);

/* Maps a simplified submission onto the template shape: processor, output →
 * task_spec.output_schema, input_schema → task_spec.input_schema, include_domains /
 * exclude_domains → source_policy, metadata, webhook_url → webhook, enable_events; any
 * field it does not know is carried over untouched; control fields (inputs, taskgroup_id,
 * preset, …) are left out. A null field stays null, so that merging it removes the
 * preset's value. Returns a new reference, or NULL when out of memory. */
json_object *tg_merge_template_from_submission(json_object *sub);

/* A stored preset as a template: "default_task_spec" becomes "task_spec", and its policy
 * ("enforced", "allowed_processors") and "gateway_webhook" are left out. Returns a new
 * reference (NULL: out of memory). */
json_object *tg_merge_template_from_preset(json_object *preset);

/* Where Parallel delivers webhooks to the gateway, under its public URL
 * (webhook_public_url). */
#define TG_WEBHOOK_PATH "/v1/webhooks/parallel"

/* A preset that says "gateway_webhook": true asks for the gateway's own webhook on every
 * run it sends: when public_url (the config's webhook_public_url; NULL or "": none) is set,
 * tmpl (the preset's template, tg_merge_template_from_preset) gets webhook {url: public_url
 * + TG_WEBHOOK_PATH, event_types: ["task_run.status"]} in place of the preset's own. A
 * submission's own webhook still overrides it, as any preset field. TG_OK or TG_ENOMEM. */
int tg_merge_gateway_webhook(json_object *tmpl, json_object *preset, const char *public_url);

/* Tidies a merged template: drops empty objects left behind by removals, and gives a
 * task_spec that lost its output_schema an auto one. */
void tg_merge_template_finish(json_object *tmpl);

/* Opens an add-runs body in b: {"default_task_spec":spec (when not NULL),"inputs":[ — the
 * caller appends the runs and "]}". TG_OK, TG_ETOOBIG or TG_ENOMEM. */
int tg_merge_add_runs_open(struct tg_buf *b, json_object *spec);

/* Appends to b the add-runs body for inputs[first .. first+count) with every input taking
 * tmpl's fields: {"default_task_spec":…,"inputs":[{"input":…,"processor":…,…},…]}.
 * tmpl's task_spec goes to default_task_spec once rather than into every input.
 * TG_OK, TG_ETOOBIG or TG_ENOMEM. */
int tg_merge_add_runs(struct tg_buf *b, json_object *tmpl, json_object *inputs, size_t first,
                      size_t count);

/* tg_merge_add_runs with every run's metadata carrying TG_RUN_TAG_KEY = tag after the
 * template's own keys (tag NULL: none). TG_EEXIST when the template's metadata already has
 * that key: the gateway never overwrites a team's value. */
int tg_merge_add_runs_tagged(struct tg_buf *b, json_object *tmpl, json_object *inputs,
                             size_t first, size_t count, const char *tag);

/* Applies a preset's policy to a submission. preset is the stored preset (may be NULL);
 * own is the submission's template (tg_merge_template_from_submission), body the submission as
 * sent, merged the final template. Problems go to detail, each naming the field as the
 * client sent it:
 *  - "enforced": ["processor", "source_policy.exclude_domains", "metadata.cost_center"]:
 *    the submission may not set these (or their parents) to anything but the preset's
 *    value;
 *  - "allowed_processors": ["core", "pro"]: the merged processor must be one of them. */
void tg_merge_check_policy(json_object *preset, json_object *own, json_object *body,
                           json_object *merged, json_object *detail);

/* The parallel-beta header a request needs: the beta names of the features the run input
 * uses (mcp_servers, enable_events, webhook), then the names the client sent (a
 * comma-separated list; may be NULL), each once, in that order. Returns a string in pool
 * ("" when none is needed), or NULL when out of memory. */
const char *tg_merge_beta_header(struct tg_pool *pool, json_object *run, const char *client);

#endif
