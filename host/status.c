/* status.c - what each worker is doing, in memory shared with the supervisor. */
#include "status.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "subscription.h"

chd_status *chd_status_self;

chd_status *chd_status_map(size_t count)
{
  void *p = mmap(NULL, count * sizeof(chd_status), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);

  return p == MAP_FAILED ? NULL : p;
}

void chd_status_unmap(chd_status *st, size_t count)
{
  if (st)
    munmap(st, count * sizeof(chd_status));
}

void chd_status_begin(int sub_index, const ch_message *msg)
{
  chd_status *st = chd_status_self;

  if (!st)
    return;
  st->sub_index = sub_index;
  st->global_position = msg->global_position;
  snprintf(st->stream, sizeof st->stream, "%s", msg->stream_name);
  snprintf(st->type, sizeof st->type, "%s", msg->type);
  st->in_handler = 1;
}

void chd_status_end(void)
{
  if (chd_status_self)
    chd_status_self->in_handler = 0;
}

void chd_status_heartbeat(void)
{
  if (chd_status_self)
    chd_status_self->heartbeat_ms = chd_now_ms();
}
