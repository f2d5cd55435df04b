/* The submission form (see tg_pages.h): every field of the simplified submission that a
 * person fills by hand, their values when the form comes back, and each problem of a 422
 * next to the field it names (loc ["body", field, index or key]) plus a summary on top. */
#include <stdio.h>
#include <string.h>

#include "tg_html.h"
#include "tg_json.h"
#include "tg_pages.h"

/* Metadata rows shown without JavaScript beyond those already filled. */
#define META_SPARE_ROWS 2
/* Processors offered; a value sent that is not here is offered too. */
static const char *const processors[] = {"lite", "base", "core", "core2x", "pro",
                                         "ultra", "ultra2x", "ultra4x", "ultra8x"};

/* The form field a problem belongs to ("inputs", "metadata", …), or "" for the whole form;
 * *sub receives the loc's next part (an input's index, a metadata key) or NULL. */
static const char *field_of(json_object *problem, json_object **sub, const char **meta_key)
{
    json_object *loc = tg_json_get(problem, "loc");
    size_t n = json_object_is_type(loc, json_type_array) ? json_object_array_length(loc) : 0;
    const char *name = n > 1 ? json_object_get_string(json_object_array_get_idx(loc, 1)) : "";
    *sub = n > 2 ? json_object_array_get_idx(loc, 2) : NULL;
    *meta_key = NULL;
    static const char *const same[] = {"token", "preset", "processor", "output", "taskgroup_id",
                                       "include_domains", "exclude_domains"};
    if (name == NULL)
        return "";
    if (strcmp(name, "inputs") == 0 || strcmp(name, "input") == 0 ||
        strcmp(name, "inputs_file") == 0)
        return "inputs";
    if (strcmp(name, "metadata") == 0) {
        if (*sub != NULL)
            *meta_key = json_object_get_string(*sub);
        return "metadata";
    }
    if (strncmp(name, "metadata.", 9) == 0) {
        *meta_key = name + 9;
        return "metadata";
    }
    if (strncmp(name, "metadata_", 9) == 0)
        return "metadata";
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
        if (strcmp(name, same[i]) == 0)
            return same[i];
    return "";
}

/* "Input 4", "File row 3", "Entry 2", "Key “x”" or "" for a problem's loc. */
static void problem_where(struct tg_buf *b, json_object *problem)
{
    json_object *sub;
    const char *key;
    json_object *loc = tg_json_get(problem, "loc");
    const char *name = json_object_get_string(json_object_array_get_idx(loc, 1));
    const char *field = field_of(problem, &sub, &key);
    int is_index = json_object_is_type(sub, json_type_int);
    long idx = is_index ? (long)json_object_get_int64(sub) : 0;
    if (strcmp(field, "inputs") == 0 && name != NULL && strcmp(name, "inputs_file") == 0 &&
        is_index)
        tg_buf_printf(b, "File row %ld: ", idx);
    else if (strcmp(field, "inputs") == 0 && is_index)
        tg_buf_printf(b, "Input %ld (line %ld): ", idx + 1, idx + 1);
    else if (strcmp(field, "metadata") == 0 && key != NULL) {
        tg_buf_adds(b, "Metadata key “");
        tg_html_escape_max(b, key, 40);
        tg_buf_adds(b, "”: ");
    } else if (is_index)
        tg_buf_printf(b, "Entry %ld: ", idx + 1);
}

static const char *label_of(const char *field)
{
    static const struct {
        const char *field, *label;
    } labels[] = {
        {"token", "Team token"}, {"preset", "Preset"}, {"processor", "Processor"},
        {"output", "Output"}, {"inputs", "Inputs"}, {"taskgroup_id", "Task group"},
        {"include_domains", "Only these domains"}, {"exclude_domains", "Never these domains"},
        {"metadata", "Metadata"},
    };
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
        if (strcmp(labels[i].field, field) == 0)
            return labels[i].label;
    return "The form";
}

static size_t count(json_object *detail)
{
    return json_object_is_type(detail, json_type_array) ? json_object_array_length(detail) : 0;
}

static void summary(struct tg_buf *b, const struct tg_form_view *v)
{
    size_t n = count(v->detail) + (v->token_error != NULL) + (v->general_error != NULL);
    if (n == 0)
        return;
    tg_buf_printf(b, "<div class=\"error-summary\" role=\"alert\" tabindex=\"-1\" "
                     "id=\"problems\"><h2>%s</h2>\n<ul>\n",
                  n == 1 ? "Please fix this problem" : "Please fix these problems");
    if (v->general_error != NULL) {
        tg_buf_adds(b, "<li>");
        tg_html_escape(b, v->general_error);
        tg_buf_adds(b, "</li>\n");
    }
    if (v->token_error != NULL) {
        tg_buf_adds(b, "<li><a href=\"#f-token\">Team token: ");
        tg_html_escape(b, v->token_error);
        tg_buf_adds(b, "</a></li>\n");
    }
    for (size_t i = 0; i < count(v->detail); i++) {
        json_object *p = json_object_array_get_idx(v->detail, i);
        json_object *sub;
        const char *key;
        const char *field = field_of(p, &sub, &key);
        if (field[0] != '\0' && key != NULL) /* "Metadata key “k”: …" names itself */
            tg_buf_printf(b, "<li><a href=\"#f-%s\">", field);
        else if (field[0] != '\0')
            tg_buf_printf(b, "<li><a href=\"#f-%s\">%s: ", field, label_of(field));
        else
            tg_buf_adds(b, "<li>");
        problem_where(b, p);
        tg_html_escape(b, tg_json_get_str(p, "msg") ? tg_json_get_str(p, "msg") : "invalid");
        tg_buf_adds(b, field[0] != '\0' ? "</a></li>\n" : "</li>\n");
    }
    tg_buf_adds(b, "</ul></div>\n");
}

/* The problems of one field (for metadata: those of the key meta_key only, or those that
 * name no key when meta_key is NULL), as a paragraph with the given id. Returns how many. */
static size_t field_problems(struct tg_buf *b, const struct tg_form_view *v, const char *field,
                             const char *meta_key, const char *id)
{
    size_t shown = 0;
    if (strcmp(field, "token") == 0 && v->token_error != NULL) {
        tg_buf_printf(b, "<p class=\"field-error\" id=\"%s\">", id);
        tg_html_escape(b, v->token_error);
        shown++;
    }
    for (size_t i = 0; i < count(v->detail); i++) {
        json_object *p = json_object_array_get_idx(v->detail, i);
        json_object *sub;
        const char *key;
        if (strcmp(field_of(p, &sub, &key), field) != 0)
            continue;
        if (strcmp(field, "metadata") == 0 &&
            ((meta_key == NULL) != (key == NULL) ||
             (meta_key != NULL && strcmp(meta_key, key) != 0)))
            continue;
        tg_buf_adds(b, shown == 0 ? "" : "<br>");
        if (shown == 0)
            tg_buf_printf(b, "<p class=\"field-error\" id=\"%s\">", id);
        problem_where(b, p);
        tg_html_escape(b, tg_json_get_str(p, "msg") ? tg_json_get_str(p, "msg") : "invalid");
        shown++;
    }
    if (shown > 0)
        tg_buf_adds(b, "</p>\n");
    return shown;
}

/* The opening of a field: its label, hint and problems; *invalid says whether it has any. */
static int field_head(struct tg_buf *b, const struct tg_form_view *v, const char *field,
                      const char *label, const char *hint)
{
    char id[48];
    snprintf(id, sizeof(id), "e-%s", field);
    tg_buf_printf(b, "<div class=\"field\" id=\"w-%s\"><label for=\"f-%s\">%s</label>\n",
                  field, field, label);
    if (hint != NULL)
        tg_buf_printf(b, "<p class=\"hint\" id=\"h-%s\">%s</p>\n", field, hint);
    return field_problems(b, v, field, NULL, id) > 0;
}

/* aria attributes and the class of a control whose field has problems. */
static void control_attrs(struct tg_buf *b, const char *field, int has_hint, int invalid)
{
    if (invalid)
        tg_buf_printf(b, " class=\"invalid\" aria-invalid=\"true\"");
    if (!invalid && !has_hint)
        return;
    tg_buf_adds(b, " aria-describedby=\"");
    if (has_hint)
        tg_buf_printf(b, "h-%s", field);
    if (invalid)
        tg_buf_printf(b, "%se-%s", has_hint ? " " : "", field);
    tg_buf_adds(b, "\"");
}

static void text_field(struct tg_buf *b, const struct tg_form_view *v, const char *field,
                       const char *label, const char *hint, const char *extra)
{
    int invalid = field_head(b, v, field, label, hint);
    tg_buf_printf(b, "<input type=\"text\" id=\"f-%s\" name=\"%s\"", field, field);
    control_attrs(b, field, hint != NULL, invalid);
    tg_buf_adds(b, extra != NULL ? extra : "");
    tg_buf_adds(b, " value=\"");
    tg_html_escape_json(b, tg_json_get(v->values, field), 0);
    tg_buf_adds(b, "\"></div>\n");
}

/* A list (of inputs, or domains) as text, one item per separator. */
static void list_text(struct tg_buf *b, json_object *list, const char *sep)
{
    if (json_object_is_type(list, json_type_string)) {
        tg_html_escape(b, json_object_get_string(list));
        return;
    }
    size_t n = json_object_is_type(list, json_type_array) ? json_object_array_length(list) : 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            tg_buf_adds(b, sep);
        tg_html_escape_json(b, json_object_array_get_idx(list, i), 0);
    }
}

static void token_field(struct tg_buf *b, const struct tg_form_view *v)
{
    int invalid = field_head(b, v, "token", "Team token",
                             "The <code>tg_…</code> token your team lead gave you.");
    tg_buf_adds(b, "<input type=\"password\" id=\"f-token\" name=\"token\" autocomplete=\"off\" "
                   "spellcheck=\"false\"");
    control_attrs(b, "token", 1, invalid);
    tg_buf_adds(b, " value=\"");
    if (v->keep_token)
        tg_html_escape(b, tg_json_get_str(v->values, "token"));
    tg_buf_adds(b, "\">\n<label class=\"check\"><input type=\"checkbox\" id=\"f-remember\" "
                   "name=\"remember\" value=\"1\"> Remember the token in this browser</label>\n"
                   "<p class=\"hint\">Only when ticked, and only in this browser's own storage "
                   "(never a cookie). Untick it to forget the token.</p></div>\n");
}

static void processor_field(struct tg_buf *b, const struct tg_form_view *v)
{
    const char *cur = tg_json_get_str(v->values, "processor");
    int known = cur == NULL;
    int invalid = field_head(b, v, "processor", "Processor",
                             "Leave it on the preset's choice unless you need another.");
    tg_buf_adds(b, "<select id=\"f-processor\" name=\"processor\"");
    control_attrs(b, "processor", 1, invalid);
    tg_buf_adds(b, ">\n<option value=\"\">The preset's processor</option>\n");
    for (size_t i = 0; i < sizeof(processors) / sizeof(processors[0]); i++) {
        int sel = cur != NULL && strcmp(cur, processors[i]) == 0;
        known |= sel;
        tg_buf_printf(b, "<option%s>%s</option>\n", sel ? " selected" : "", processors[i]);
    }
    if (!known) {
        tg_buf_adds(b, "<option selected>");
        tg_html_escape(b, cur);
        tg_buf_adds(b, "</option>\n");
    }
    tg_buf_adds(b, "</select></div>\n");
}

static void inputs_field(struct tg_buf *b, const struct tg_form_view *v)
{
    int invalid = field_head(b, v, "inputs", "Inputs",
                             "One input per line; a line that is a JSON object is an object "
                             "input. Or choose a file below.");
    tg_buf_adds(b, "<textarea id=\"f-inputs\" name=\"inputs\" rows=\"8\" spellcheck=\"false\"");
    control_attrs(b, "inputs", 1, invalid);
    tg_buf_adds(b, ">");
    list_text(b, tg_json_get(v->values, "inputs"), "\n");
    tg_buf_adds(b, "</textarea>\n<p class=\"counter\" id=\"input-count\" aria-live=\"polite\">"
                   "</p>\n<label for=\"f-file\" class=\"sub\">Or a file of inputs</label>\n"
                   "<p class=\"hint\" id=\"h-file\">A text file with one input per line, or a "
                   "CSV file whose first row names the columns.</p>\n<input type=\"file\" "
                   "id=\"f-file\" name=\"inputs_file\" accept=\".csv,.txt,text/csv,text/plain\" "
                   "aria-describedby=\"h-file\"></div>\n");
}

static void meta_row(struct tg_buf *b, const struct tg_form_view *v, size_t i, const char *key,
                     json_object *value)
{
    char id[32];
    snprintf(id, sizeof(id), "e-meta-%zu", i);
    tg_buf_adds(b, "<div class=\"meta-row\">");
    size_t bad = key != NULL ? field_problems(b, v, "metadata", key, id) : 0;
    tg_buf_printf(b, "<input type=\"text\" name=\"metadata_key\" aria-label=\"Key %zu\" "
                     "placeholder=\"key\" class=\"meta-key%s\"", i + 1, bad ? " invalid" : "");
    if (bad)
        tg_buf_printf(b, " aria-invalid=\"true\" aria-describedby=\"%s\"", id);
    if (i == 0)
        tg_buf_adds(b, " id=\"f-metadata\"");
    tg_buf_adds(b, " value=\"");
    tg_html_escape(b, key);
    tg_buf_printf(b, "\"><input type=\"text\" name=\"metadata_value\" aria-label=\"Value %zu\" "
                     "placeholder=\"value\" value=\"", i + 1);
    tg_html_escape_json(b, value, 0);
    tg_buf_adds(b, "\"></div>\n");
}

static void metadata_field(struct tg_buf *b, const struct tg_form_view *v)
{
    json_object *md = tg_json_get(v->values, "metadata");
    field_head(b, v, "metadata", "Metadata",
               "Key and value pairs stored with each run (keys of at most 16 characters).");
    tg_buf_adds(b, "<div id=\"meta-rows\">\n");
    size_t i = 0;
    if (json_object_is_type(md, json_type_object)) {
        json_object_object_foreach(md, key, val) {
            meta_row(b, v, i++, key, val);
        }
    }
    for (size_t spare = 0; spare < META_SPARE_ROWS; spare++)
        meta_row(b, v, i++, NULL, NULL);
    tg_buf_adds(b, "</div></div>\n");
}

static void area_field(struct tg_buf *b, const struct tg_form_view *v, const char *field,
                       const char *label, const char *hint, int rows, const char *sep)
{
    int invalid = field_head(b, v, field, label, hint);
    tg_buf_printf(b, "<textarea id=\"f-%s\" name=\"%s\" rows=\"%d\"", field, field, rows);
    control_attrs(b, field, hint != NULL, invalid);
    tg_buf_adds(b, ">");
    list_text(b, tg_json_get(v->values, field), sep);
    tg_buf_adds(b, "</textarea></div>\n");
}

/* Whether anything under "More options" has a value or a problem: then it starts open. */
static int more_open(const struct tg_form_view *v)
{
    static const char *const fields[] = {"taskgroup_id", "include_domains", "exclude_domains",
                                         "metadata"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (tg_json_get(v->values, fields[i]) != NULL)
            return 1;
        for (size_t j = 0; j < count(v->detail); j++) {
            json_object *sub;
            const char *key;
            if (strcmp(field_of(json_object_array_get_idx(v->detail, j), &sub, &key),
                       fields[i]) == 0)
                return 1;
        }
    }
    return 0;
}

void tg_pages_form(struct tg_buf *b, const struct tg_form_view *v)
{
    summary(b, v);
    tg_buf_adds(b, "<form class=\"submit\" id=\"submit-form\" method=\"post\" action=\"/v1/runs\" "
                   "enctype=\"multipart/form-data\" accept-charset=\"utf-8\" novalidate>\n");
    token_field(b, v);
    text_field(b, v, "preset", "Preset",
               "Your team's stored defaults to start from; empty means <code>default</code>.",
               " autocomplete=\"off\" placeholder=\"default\"");
    processor_field(b, v);
    area_field(b, v, "output", "Output",
               "Describe the answer you want for each input, e.g. “the year it was founded”.",
               2, "");
    inputs_field(b, v);
    tg_buf_printf(b, "<details class=\"more\"%s><summary>More options</summary>\n",
                  more_open(v) ? " open" : "");
    text_field(b, v, "taskgroup_id", "Task group",
               "Add to this existing group (<code>tgrp_…</code>); empty creates a new one.",
               " autocomplete=\"off\" spellcheck=\"false\"");
    area_field(b, v, "include_domains", "Only these domains",
               "Comma or line separated, e.g. <code>wikipedia.org, .gov</code>.", 2, ", ");
    area_field(b, v, "exclude_domains", "Never these domains",
               "Comma or line separated.", 2, ", ");
    metadata_field(b, v);
    tg_buf_adds(b, "</details>\n<p class=\"actions\"><button type=\"submit\" class=\"button\">"
                   "Add runs</button></p>\n</form>\n");
}
