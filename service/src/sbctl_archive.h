/* sbctl_archive.h - sbctl archive ls|cat (sbctl_archive.c). */
#ifndef SB_SERVICE_SBCTL_ARCHIVE_H
#define SB_SERVICE_SBCTL_ARCHIVE_H

/* Runs "sbctl archive" with argv[0] the subcommand ("ls", "cat") and its arguments;
 * returns the exit status (0, 1 not found/ambiguous/gap/error, 2 usage). */
int sb__sbctl_archive(int argc, char** argv);

#endif
