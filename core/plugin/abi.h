/* The archreg plugin ABI, version 1: the whole boundary between the host and a plugin.
 *
 * FROZEN. Any change to a type or member below is a new ARCHREG_PLUGIN_ABI_VERSION; the host
 * refuses a plugin of another version before calling anything else, naming both numbers.
 * Only C types cross the boundary: no C++ classes, no allocations that change owner, and no
 * exceptions (a plugin catches its own; the host also guards every call). See
 * docs/plugin-abi.md for the rules and for how the forward pass will be added (version 2).
 */
#ifndef ARCHREG_PLUGIN_ABI_H
#define ARCHREG_PLUGIN_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ARCHREG_PLUGIN_ABI_VERSION 1u

/* The exported symbol (a Boost.DLL alias) through which the host finds a plugin. */
#define ARCHREG_PLUGIN_ENTRY_NAME "archreg_plugin"

/* Host-owned state of one check run; opaque to plugins. */
typedef struct archreg_check_context archreg_check_context;

/* What the host offers a plugin's check. Valid only during the call it is passed to. */
typedef struct archreg_host_v1 {
  uint32_t abi_version;
  /* The arch spec's integer hyperparameter `name`, as evaluated for this file (the global
   * value). Returns 1 and stores it in *value, or 0 if it has no value. */
  int (*hparam)(const archreg_check_context* context, const char* name, int64_t* value);
  /* 1 if the file's metadata has `key`, else 0. */
  int (*has_key)(const archreg_check_context* context, const char* key);
  /* 1 if the file stores a tensor named `name` (exactly as stored), else 0. */
  int (*has_tensor)(const archreg_check_context* context, const char* name);
  /* Adds a finding. `code` is one of docs/cli.md's codes; the strings are copied. */
  void (*report)(archreg_check_context* context, const char* code, const char* subject, const char* message);
} archreg_host_v1;

typedef struct archreg_plugin_v1 {
  /* First member, always: the host reads it before anything else. */
  uint32_t abi_version;
  /* The plugin's name, for messages ("myfamily"). */
  const char* name;
  /* The general.architecture values this plugin serves. */
  const char* const* archs;
  uint32_t n_archs;
  /* The fusable groups (spec names, e.g. "ffn_gate_up_exps") whose fused form the plugin's
   * forward pass runs. A file that stores another group fused is refused at load. */
  const char* const* fused_groups;
  uint32_t n_fused_groups;
  /* Optional (may be NULL): checks a spec cannot express, reported through host->report.
   * Returns 0 when the check ran, non-zero when it could not (the host reports that). */
  int (*check)(const archreg_host_v1* host, archreg_check_context* context, const char* arch);
} archreg_plugin_v1;

/* The type of the exported entry point. */
typedef const archreg_plugin_v1* (*archreg_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* ARCHREG_PLUGIN_ABI_H */
