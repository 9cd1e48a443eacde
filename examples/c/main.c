/* Embedding Palisade in a C gateway: create a runtime, install an application from a TOML
 * spec (an accessControlPolicy authorizer), decide a permitted retrieve and a denied delete,
 * print why, free everything.
 *
 * With two arguments, `embed_c LOG_DIR KEYSTORE_DIR`, every decision is first written to the
 * signed, hash-chained audit log in LOG_DIR (SER-016), its checkpoints signed with the audit
 * key kept in KEYSTORE_DIR; `palisade audit verify --log LOG_DIR --key LOG_DIR/gateway.pub`
 * checks it afterwards.
 *
 * Build (after `cargo build -p palisade-capi`), from the repository root:
 *   cc examples/c/main.c -Ihost/capi/include -Ltarget/debug -lpalisade_capi \
 *      -Wl,-rpath,$PWD/target/debug -o embed_c && ./embed_c
 * The tests build and run it (host/capi/tests/capi/c_example.rs). */

#include <stdio.h>
#include <stdlib.h>

#include "palisade.h"

static const char *SPEC =
    "name = \"lights\"\n"
    "[groups]\n"
    "operators = [\"CAE-night-shift\"]\n"
    "[[plugin]]\n"
    "plugin = \"acp\"\n"
    "kind = \"authorizer\"\n"
    "capabilities = [\"groups\"]\n"
    "[plugin.config]\n"
    "policies = [{ id = \"lights-acp\", pv = { acr = [\n"
    "    { acor = [\"CAE-admin\"], acop = 63 },\n"
    "    { acor = [\"<operators>\"], acop = 2 },\n"
    "] } }]\n";

/* Prints the failure, frees its message, and says whether the call failed. */
static int failed(const char *what, PalisadeStatus status, char *error) {
    if (status == PALISADE_STATUS_OK) {
        return 0;
    }
    fprintf(stderr, "%s failed (status %d): %s\n", what, (int)status, error ? error : "");
    palisade_string_free(error);
    return 1;
}

/* Decides `request` and prints the answer; returns the effect, or -1 on error. */
static int decide(PalisadeRuntime *runtime, const char *what, const char *request) {
    PalisadeDecision *decision = NULL;
    char *error = NULL;
    if (failed("decide", palisade_runtime_decide(runtime, request, &decision, &error), error)) {
        return -1;
    }
    PalisadeEffect effect;
    const char *reason = NULL;
    const char *plugin = NULL;
    palisade_decision_effect(decision, &effect);
    palisade_decision_reason(decision, &reason);
    palisade_decision_decided_by(decision, &plugin);
    const char *record = NULL;
    palisade_decision_id(decision, &record);
    printf("%s: %s - %s [decided by %s]", what,
           effect == PALISADE_EFFECT_PERMIT ? "permit" : "deny", reason,
           plugin ? plugin : "nobody");
    if (record) {
        printf(" [record %s]", record);
    }
    printf("\n");
    palisade_decision_free(decision);
    return (int)effect;
}

int main(int argc, char **argv) {
    PalisadeRuntime *runtime = NULL;
    char *error = NULL;
    if (failed("palisade_runtime_new",
               palisade_runtime_new(NULL, PALISADE_FORMAT_TOML, &runtime, &error), error)) {
        return 1;
    }
    /* Audit before answer: a decision the log cannot take comes back as a deny. */
    if (argc == 3 &&
        failed("palisade_runtime_set_audit_log",
               palisade_runtime_set_audit_log(runtime, argv[1], argv[2],
                                              PALISADE_AUDIT_FAILURE_DENY, &error),
               error)) {
        palisade_runtime_free(runtime);
        return 1;
    }
    if (failed("install", palisade_runtime_install(runtime, SPEC, PALISADE_FORMAT_TOML, &error),
               error)) {
        palisade_runtime_free(runtime);
        return 1;
    }

    /* Installing the same application twice is refused, with a message saying why. */
    PalisadeStatus again = palisade_runtime_install(runtime, SPEC, PALISADE_FORMAT_TOML, &error);
    printf("install again: status %d - %s\n", (int)again, error ? error : "");
    palisade_string_free(error);

    int read = decide(runtime, "retrieve",
                      "{\"app\": \"lights\", \"originator\": \"CAE-night-shift\","
                      " \"operation\": \"retrieve\", \"target\": \"/cse-in/lights/lamp1\"}");
    int del = decide(runtime, "delete",
                     "{\"app\": \"lights\", \"originator\": \"CAE-night-shift\","
                     " \"operation\": \"delete\", \"target\": \"/cse-in/lights/lamp1\"}");

    palisade_runtime_free(runtime);
    if (read != PALISADE_EFFECT_PERMIT || del != PALISADE_EFFECT_DENY ||
        again != PALISADE_STATUS_ALREADY_INSTALLED) {
        fprintf(stderr, "the decisions were not the expected ones\n");
        return 1;
    }
    return 0;
}
