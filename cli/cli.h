/* cli.h - shared bits of the jobmatch command-line front end. */
#ifndef JM_CLI_H
#define JM_CLI_H

#include <stdio.h>

#define DEFAULT_MODEL "models/all-MiniLM-L6-v2"
#define DEFAULT_DB "jobmatch.db"

const char *cli_default_model(void); /* $JOBMATCH_MODEL or DEFAULT_MODEL */
const char *cli_default_db(void);    /* $JOBMATCH_DB or DEFAULT_DB */
/* The engine snapshot file for a store (rank.h, "Snapshots"): opt if given,
 * else $JOBMATCH_SNAPSHOT, else "<file>.snapshot" beside a SQLite file; NULL
 * when that is "off", or for PostgreSQL with neither set. Written into buf. */
const char *cli_snapshot_path(const char *db_url, const char *opt, char *buf, size_t cap);
int cli_parse_int(const char *s, const char *what, long lo, long hi, long *out);

int cmd_migrate(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_import_onet(int argc, char **argv);
int cmd_attach(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_get_embedding(int argc, char **argv);
int cmd_recommend(int argc, char **argv);
int cmd_gap(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
