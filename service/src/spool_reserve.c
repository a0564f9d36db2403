/*
 * spool_reserve.c - the spool's reserve file and the deletes kept for later (worker
 * thread): what lets a spool on a full disk drain. The lowest of the spool's files:
 * it calls none of the others.
 *
 * A full disk. Deleting delivered rows needs room too (WAL frames), so the spool keeps
 * a reserve: a file of spool_reserve_bytes beside the database, made while there is
 * room and removed when a transaction fails for want of space, or at start. With it
 * gone, delivered data can be deleted and the WAL checkpointed and truncated, and the
 * spool drains and takes new streams again even while other files fill the disk.
 * Deletes that still cannot commit are kept and retried with every later batch, so
 * delivered data never stays for good. The WAL budget is at most half the reserve, so
 * the reserve's room lets a checkpoint copy the whole WAL into the database. Until the
 * reserve is back (or the disk has room again), new data goes only into pages the
 * database file already has free: the file then never needs to grow, so checkpoints and
 * deletes cannot fail for want of space, and new streams are taken as soon as delivered
 * ones are deleted. The WAL is held to a budget (a quarter of spool_max_bytes, at most
 * 16 MiB: wal_autocheckpoint and journal_size_limit), and that budget counts against
 * spool_max_bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "spool_int.h"

/* Keeps a delete that could not commit; a later one for the same stream replaces it. */
void sb__spool_pending_add(sb__spool_t* sp, const sb__spool_job_t* j) {
  sb__spool_pending_t* p = NULL;
  size_t i;
  for (i = 0; i < sp->npending; i++)
    if (sp->pending[i].sid == j->sid)
      p = &sp->pending[i];
  if (p == NULL) {
    if (sp->npending == sp->pending_cap) {
      sp->pending_cap = sp->pending_cap ? 2 * sp->pending_cap : 16;
      sp->pending = sb__xrealloc(sp->pending, sp->pending_cap * sizeof(*p));
    }
    p = &sp->pending[sp->npending++];
    memset(p, 0, sizeof(*p));
    p->sid = j->sid;
  }
  if (j->op == SB__SPOOL_FORGET) {
    p->forget = 1;
  } else if (!p->forget && j->off >= p->off) {
    p->off = j->off;
    p->trim = j->trim;
  }
}

/* Writes the reserve file: reserve_size bytes really written, so that removing it
 * gives them back. Returns 0, or a libuv error (the file is removed again). */
static int reserve_write(sb__spool_t* sp) {
  static const char zeros[65536];
  uv_fs_t req;
  uint64_t done = 0;
  uv_file fd;
  int r;
  /* Made anew, never through what is in its place: a link there is removed (not its
   * target), and O_EXCL refuses one put back meanwhile. */
  uv_fs_unlink(NULL, &req, sp->reserve_path, NULL);
  uv_fs_req_cleanup(&req);
  fd = sb__file_open(sp->reserve_path, UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_EXCL);
  if (fd < 0)
    return fd;
  r = 0;
  while (done < sp->reserve_size) {
    size_t n = sp->reserve_size - done < sizeof(zeros)
                   ? (size_t)(sp->reserve_size - done)
                   : sizeof(zeros);
    uv_buf_t buf = uv_buf_init((char*)zeros, (unsigned)n);
    r = uv_fs_write(NULL, &req, fd, &buf, 1, (int64_t)done, NULL);
    uv_fs_req_cleanup(&req);
    if (r <= 0) {
      r = r < 0 ? r : UV_ENOSPC;
      break;
    }
    done += (uint64_t)r;
    r = 0;
  }
  if (r == 0) {
    r = uv_fs_fsync(NULL, &req, fd, NULL);
    uv_fs_req_cleanup(&req);
  }
  uv_fs_close(NULL, &req, fd, NULL);
  uv_fs_req_cleanup(&req);
  if (r < 0) {
    uv_fs_unlink(NULL, &req, sp->reserve_path, NULL);
    uv_fs_req_cleanup(&req);
  }
  return r;
}

/*
 * While the reserve is missing (worker thread, each batch: a statfs): makes it once
 * the file system has room for it, and ends the tight mode once there is room again
 * (the reserve is back, or, on a disk too small for it, a quarter of the disk is
 * free).
 */
void sb__spool_reserve_check(sb__spool_t* sp, int64_t now) {
  uv_fs_t req;
  int64_t avail = -1, total = 0;
  int r;
  if ((sp->reserve_held || sp->reserve_size == 0) && !sp->tight)
    return;
  if (uv_fs_statfs(NULL, &req, sp->data_dir, NULL) == 0) {
    uv_statfs_t* fs = req.ptr;
    avail = (int64_t)(fs->f_bavail * fs->f_bsize);
    total = (int64_t)(fs->f_blocks * fs->f_bsize);
  }
  uv_fs_req_cleanup(&req);
  /* Twice its size free: room for the reserve and as much again (right after the
   * reserve was given back, the disk's free space is the reserve itself). */
  if (!sp->reserve_held && sp->reserve_size > 0 && now >= sp->reserve_next_try &&
      (avail < 0 || (uint64_t)avail >= 2 * sp->reserve_size)) {
    if ((r = reserve_write(sp)) == 0) {
      sp->reserve_held = 1;
      SB_LOG_I("spool", "%s: reserve of %llu bytes in place", sp->reserve_path,
               (unsigned long long)sp->reserve_size);
    } else {
      sp->reserve_next_try = now + 10000;
      if (!sp->reserve_warned)
        SB_LOG_W("spool", "%s: cannot make the reserve of %llu bytes: %s",
                 sp->reserve_path, (unsigned long long)sp->reserve_size,
                 uv_strerror(r));
      sp->reserve_warned = 1;
    }
  }
  if (sp->tight &&
      (sp->reserve_held || (avail >= 0 && ((uint64_t)avail >= 2 * sp->reserve_size ||
                                           (sp->reserve_size > (uint64_t)total / 4 &&
                                            avail >= total / 4))))) {
    sp->tight = 0;
    SB_LOG_I("spool", "room again on the disk: new data is taken as usual");
  }
}

/* Gives the reserve back to the file system. Returns 1 if there was one. */
int sb__spool_reserve_release(sb__spool_t* sp, int64_t now) {
  uv_fs_t req;
  int had;
  uv_fs_unlink(NULL, &req, sp->reserve_path, NULL);
  uv_fs_req_cleanup(&req);
  had = sp->reserve_held;
  sp->reserve_held = 0;
  sp->reserve_next_try = now;
  return had;
}

/* A RESTART checkpoint: the next transaction writes the WAL from its start again, in
 * room the file already has. In the tight mode it follows every commit, so the WAL
 * never needs to grow. */
void sb__spool_checkpoint(sb__spool_t* sp) {
  int log = 0, done = 0;
  int r =
      sqlite3_wal_checkpoint_v2(sp->db, NULL, SQLITE_CHECKPOINT_RESTART, &log, &done);
  if (r != SQLITE_OK && r != SQLITE_BUSY)
    SB_LOG_W("spool", "checkpoint: %s (%d of %d WAL frames copied)", sqlite3_errstr(r),
             done, log);
}
