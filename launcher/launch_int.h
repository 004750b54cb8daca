/* launch_int.h - launcher-internal pieces of 'petal launch' (user-data,
 * IMDSv2 client, agent upload), shared with the tests. */
#ifndef PETAL_LAUNCHER_LAUNCH_INT_H
#define PETAL_LAUNCHER_LAUNCH_INT_H

#include "plaunch.h"

#define PL_USER_DATA_MAX 16383

/* Render the bootstrap script for role ("server"/"client") into out.
 * guard_min: minutes after boot at which a real instance shuts itself down
 * (terminate on shutdown). PT_OK, PT_ERR_INVAL (unsafe input), PT_ERR_RANGE
 * (over 16383 bytes). */
int pl_render_user_data(const char *run_id, const char *role, const char *manifest_url,
                        int guard_min, pl_str *out, char *err);

/* IMDSv2: role credentials of this instance (PUT token, GET role name, GET
 * the role's JSON). endpoint NULL: $PETAL_IMDS_ENDPOINT or
 * http://169.254.169.254. c->source names the role; *expires gets the
 * Expiration as UNIX time (0 if unknown). */
int pl_imds_role_credentials(const char *endpoint, pl_creds *c, time_t *expires, char *err);

/* Upload a file with role credentials from IMDSv2 (the agent side of
 * --instance-profile). */
int pl_agent_put(const char *file, const char *bucket, const char *key, const char *region,
                 const char *s3_endpoint, const char *imds_endpoint, char *err);

/* Names of the run's objects. */
#define PL_KEY_ARTIFACT_SRC "artifacts/petal-src.tar.gz"
#define PL_KEY_ARTIFACT_DATA "artifacts/dataset.tar.gz"
#define PL_KEY_ARTIFACT_MODEL "artifacts/model.json"
/* The run's authentication material (private keys and token: reachable only
 * through presigned GETs in the role's manifest, or with bucket access). */
#define PL_KEY_AUTH_PREFIX "auth/"
#define PL_KEY_AUTH_CA "auth/ca.pem"

#endif
