/* group.c - a consumer group shared by hosts through leases (group_member = auto). */
#include "group.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "status.h"
#include "uuid.h"

/* One (subscription, slot) of the group. */
typedef struct slot {
  int sub;                      /* the subscription's index in the plugin */
  int64_t member;               /* the slot: the consumer group member */
  bool held;                    /* its lease is ours */
  int64_t generation;
  char group[256];              /* the subscription's id without the slot */
  chd_lease_fence fence;        /* points into this slot and the group */
  chd_sub_pg_arg arg;
} slot;

struct chd_group {
  ch_ctx *ctx;
  chd_group_args args;
  int64_t size;                 /* group_size */
  int64_t lease_ms;
  size_t nsubs;
  char owner[CHD_LEASE_OWNER_MAX];
  chd_lease_store ls;
  slot *slots;                  /* nsubs * size, record j = sub * size + member */
  chd_sub *subs;                /* parallel to slots */
  int64_t next_renew_ms;
  int64_t valid_until_ms;       /* the leases count as ours until then */
  int64_t ahead_until_ms;       /* the slots read ahead until then (subscription.h) */
  int64_t renewed_ms;           /* the start of the last renewal that worked */
  int64_t members;              /* live hosts at the last renewal */
  int64_t *ranks;               /* per subscription: our rank among them */
  chd_lease_backend store_be, view_be;  /* ours, as recorded in the leases */
  bool warned;                  /* a failed renewal was logged */
};

int64_t chd_group_ids(const chd_instance_config *inst)
{
  return inst->group_auto ? inst->group_size : 1;
}

void chd_group_id(const ch_subscription *desc, const chd_instance_config *inst, int64_t j,
                  char *buf, size_t size)
{
  if (inst->group_auto)
    snprintf(buf, size, "%s:%" PRId64, desc->subscriber_id, j);
  else
    chd_sub_effective_id(desc, inst, buf, size);
}

int64_t chd_group_member_of(const chd_instance_config *inst, int64_t j)
{
  return inst->group_auto ? j : inst->group_member;
}

int64_t chd_group_target(int64_t slots, int64_t members, int64_t rank)
{
  if (members <= 0)
    return slots;
  return slots / members + (rank < slots % members ? 1 : 0);
}

void chd_group_owner_id(char *buf, size_t size)
{
  char host[64] = "", u[CHD_UUID_LEN];

  if (gethostname(host, sizeof host) != 0 || !host[0])
    snprintf(host, sizeof host, "host");
  host[40] = '\0';
  chd_uuid_v4(u);
  snprintf(buf, size, "%s:%d.%.4s", host, (int)getpid(), u);
}

static chd_log_fields fields(const chd_group *g, const slot *sl)
{
  chd_log_fields f = { g->ctx->inst->name, sl ? sl->group : NULL, NULL, NULL };
  return f;
}

static chd_status_slot *status_of(const chd_group *g, const slot *sl)
{
  size_t j = (size_t)(sl - g->slots);

  if (!chd_status_self || j >= CHD_STATUS_MAX_SLOTS)
    return NULL;
  return &chd_status_self->slots[j];
}

size_t chd_group_entries(const chd_instance_config *inst, const ch_plugin_desc *d,
                         const chd_status *st, chd_group_entry *out, size_t max)
{
  size_t n = 0;

  if (!inst->group_auto) {
    for (size_t k = 0; d->subscriptions[k].stream_name && k < CHD_STATUS_MAX_SUBS && n < max;
         k++, n++) {
      chd_sub_effective_id(&d->subscriptions[k], inst, out[n].id, sizeof out[n].id);
      out[n].ss = &st->subs[k];
      out[n].slot = NULL;
    }
    return n;
  }
  for (int j = 0; j < st->slot_count && j < CHD_STATUS_MAX_SLOTS && n < max; j++) {
    const chd_status_slot *sl = &st->slots[j];
    if (!sl->owned)
      continue;
    snprintf(out[n].id, sizeof out[n].id, "%s:%" PRId64, d->subscriptions[sl->sub].subscriber_id,
             sl->slot);
    out[n].ss = &sl->s;
    out[n].slot = sl;
    n++;
  }
  return n;
}

chd_group *chd_group_new(ch_ctx *ctx, const chd_group_args *args, char *err, size_t errlen)
{
  const chd_instance_config *inst = ctx->inst;
  size_t nsubs = chd_plugin_subscription_count(ctx->plugin);
  chd_group *g;

  if ((int64_t)nsubs * inst->group_size > CHD_STATUS_MAX_SLOTS) {
    snprintf(err, errlen, "group_member = auto: %zu subscriptions of %" PRId64 " slots each"
             " are more than the %d slots a worker can hold", nsubs, inst->group_size,
             CHD_STATUS_MAX_SLOTS);
    return NULL;
  }
  g = calloc(1, sizeof *g);
  if (!g || !(g->slots = calloc(nsubs * (size_t)inst->group_size, sizeof *g->slots)) ||
      !(g->subs = calloc(nsubs * (size_t)inst->group_size, sizeof *g->subs)) ||
      !(g->ranks = calloc(nsubs, sizeof *g->ranks))) {
    snprintf(err, errlen, "out of memory");
    chd_group_free(g);
    return NULL;
  }
  g->ctx = ctx;
  g->args = *args;
  g->size = inst->group_size;
  g->lease_ms = inst->lease_timeout_ms;
  g->nsubs = nsubs;
  snprintf(g->owner, sizeof g->owner, "%s", args->owner);
  chd_lease_store_init(&g->ls, inst->position_store, ctx->mdb, ctx->view);
  if (chd_lease_prepare(&g->ls) != CHD_STORE_OK) {
    snprintf(err, errlen, "%s", chd_lease_error(&g->ls));
    chd_group_free(g);
    return NULL;
  }
  for (size_t k = 0; k < nsubs; k++) {
    const ch_subscription *desc = &ctx->plugin->desc.subscriptions[k];

    for (int64_t m = 0; m < g->size; m++) {
      slot *sl = &g->slots[k * (size_t)g->size + (size_t)m];
      chd_status_slot *st;

      sl->sub = (int)k;
      sl->member = m;
      snprintf(sl->group, sizeof sl->group, "%s", desc->subscriber_id);
      sl->fence.group = sl->group;
      sl->fence.slot = m;
      sl->fence.owner = g->owner;
      sl->arg.read = args->read;
      sl->arg.fence = &sl->fence;
      g->subs[k * (size_t)g->size + (size_t)m].state = CHD_SUB_LOST;
      if ((st = status_of(g, sl)) != NULL) {
        st->sub = (int)k;
        st->slot = m;
      }
    }
    if (chd_lease_join(&g->ls, desc->subscriber_id, g->size, g->owner, g->lease_ms)
        != CHD_STORE_OK) {
      snprintf(err, errlen, "joining the group of %s: %s", desc->subscriber_id,
               chd_lease_error(&g->ls));
      chd_group_free(g);
      return NULL;
    }
  }
  if (chd_status_self)
    chd_status_self->slot_count = (int)(nsubs * (size_t)g->size);
  {
    chd_log_fields f = fields(g, NULL);
    chd_log(CH_LOG_INFO, &f, "joined the consumer group as %s: %" PRId64 " slots per"
            " subscription, lease timeout %" PRId64 " ms", g->owner, g->size, g->lease_ms);
  }
  return g;
}

chd_sub *chd_group_subs(chd_group *g, size_t *n)
{
  *n = g->nsubs * (size_t)g->size;
  return g->subs;
}

bool chd_group_valid(const chd_group *g)
{
  return chd_now_ms() < g->valid_until_ms;
}

int64_t chd_group_next_ms(const chd_group *g)
{
  return g->next_renew_ms;
}

static chd_sub *sub_of(chd_group *g, const slot *sl)
{
  return &g->subs[sl - g->slots];
}

/* Let go of a slot's subscription (its lease is handled by the caller). */
static void drop(chd_group *g, slot *sl)
{
  chd_sub *s = sub_of(g, sl);
  chd_status_slot *st = status_of(g, sl);

  chd_sub_release(s);
  memset(s, 0, sizeof *s);
  s->state = CHD_SUB_LOST;
  sl->held = false;
  if (st)
    st->owned = 0;
}

/* A slot taken over by another host: nothing of it is saved. */
static void lost(chd_group *g, slot *sl, const char *why)
{
  chd_log_fields f = fields(g, sl);

  chd_log(CH_LOG_WARN, &f, "lost slot %" PRId64 " of %s (generation %" PRId64 "): %s",
          sl->member, sl->group, sl->generation, why);
  drop(g, sl);
  if (chd_status_self)
    chd_status_self->slots_lost++;
}

/* Give a slot up at a batch boundary: its position saved (fenced), then its
 * lease released. */
static void give_up(chd_group *g, slot *sl, const char *why)
{
  chd_log_fields f = fields(g, sl);
  chd_sub *s = sub_of(g, sl);

  if (chd_sub_save_position(s) != 0) {
    if (s->state == CHD_SUB_LOST) {
      lost(g, sl, "its lease was taken over");
      return;
    }
    chd_log(CH_LOG_WARN, &f, "cannot save the position %" PRId64 " of %s: %s", s->position,
            s->subscriber_id, s->error);
  }
  if (chd_lease_release(&g->ls, sl->group, sl->member, g->owner, sl->generation)
      != CHD_STORE_OK)
    chd_log(CH_LOG_WARN, &f, "cannot release slot %" PRId64 ": %s (it expires by itself)",
            sl->member, chd_lease_error(&g->ls));
  chd_log(CH_LOG_INFO, &f, "gave slot %" PRId64 " of %s up %s; Stopped %s at global position"
          " %" PRId64, sl->member, sl->group, why, s->subscriber_id, s->position);
  drop(g, sl);
  if (chd_status_self)
    chd_status_self->slots_given++;
}

/* Our backends, as the leases record them (looked up when a session is new). */
static void our_backends(chd_group *g)
{
  chd_lease_own_backend(&g->ls, CHD_LEASE_ON_STORE, &g->store_be);
  if (g->ctx->view)
    chd_lease_own_backend(&g->ls, CHD_LEASE_ON_VIEW, &g->view_be);
}

/* Is the leases' database reachable? One attempt to reconnect when not. */
static bool reachable(chd_group *g)
{
  if (g->ctx->inst->position_store == CHD_POSITION_VIEW_DATA) {
    if (!chd_viewdb_broken(g->ctx->view))
      return true;
    return chd_viewdb_connect(g->ctx->view) == CHD_STORE_OK;
  }
  if (!chd_mdb_broken(g->ctx->mdb))
    return true;
  return chd_mdb_connect(g->ctx->mdb) == CHD_STORE_OK;
}

/* The renewal failed or could not be tried: once the leases are older than
 * their timeout, whatever we held may be someone else's. */
static void renewal_failed(chd_group *g, const char *why)
{
  chd_log_fields f = fields(g, NULL);
  int64_t now = chd_now_ms();
  size_t n = g->nsubs * (size_t)g->size, dropped = 0;

  if (!g->warned)
    chd_log(CH_LOG_WARN, &f, "cannot renew the leases: %s; trying again", why);
  g->warned = true;
  g->next_renew_ms = now + 250;
  if (now < g->valid_until_ms)
    return;
  for (size_t j = 0; j < n; j++)
    if (g->slots[j].held) {
      drop(g, &g->slots[j]);
      dropped++;
    }
  if (dropped > 0) {
    chd_log(CH_LOG_WARN, &f, "gave up %zu slot%s: their leases were not renewed for %" PRId64
            " ms (lease_timeout_ms %" PRId64 "); they may be taken over", dropped,
            dropped == 1 ? "" : "s", now - g->renewed_ms, g->lease_ms);
    if (chd_status_self)
      chd_status_self->slots_lost += (int64_t)dropped;
  }
}

/* Renew every held lease; drop the ones taken over. Returns 0, or -1 when
 * the database could not be reached. */
static int renew(chd_group *g, int64_t started)
{
  size_t n = g->nsubs * (size_t)g->size;
  int64_t *slots = calloc(n, sizeof *slots), *gens = calloc(n, sizeof *gens);
  bool *held = calloc(n, sizeof *held);
  int rc = 0;

  if (!slots || !gens || !held) {
    free(slots);
    free(gens);
    free(held);
    renewal_failed(g, "out of memory");
    return -1;
  }
  for (size_t k = 0; k < g->nsubs && rc == 0; k++) {
    slot *first = &g->slots[k * (size_t)g->size];
    size_t m = 0;
    int64_t members = 0, rank = 0;

    for (int64_t i = 0; i < g->size; i++)
      if (first[i].held) {
        slots[m] = first[i].member;
        gens[m++] = first[i].generation;
      }
    if (chd_lease_renew(&g->ls, first->group, g->size, g->owner, g->lease_ms, &g->store_be,
                        g->view_be.pid ? &g->view_be : NULL, slots, gens, m, held, &members,
                        &rank) != CHD_STORE_OK) {
      renewal_failed(g, chd_lease_error(&g->ls));
      rc = -1;
      break;
    }
    for (size_t i = 0; i < m; i++)
      if (!held[i])
        lost(g, &first[slots[i]], "its lease was taken over");
    g->members = members;
    g->ranks[k] = rank;
  }
  free(slots);
  free(gens);
  free(held);
  if (rc == 0) {
    g->renewed_ms = started;
    g->valid_until_ms = started + g->lease_ms - g->lease_ms / 10;
    /* a batch read ahead is used at the slot's next read: none once 40 %
     * of the lease's time has passed since this renewal (they come every
     * 25 %: a later one has failed, or is late) */
    g->ahead_until_ms = started + g->lease_ms * 2 / 5;
    if (g->warned) {
      chd_log_fields f = fields(g, NULL);
      chd_log(CH_LOG_INFO, &f, "renewing the leases again");
    }
    g->warned = false;
  }
  return rc;
}

/* Start slot sl's subscription: its position and parked streams are read
 * now that the lease is ours. Once more after a reconnection when a
 * connection broke (one ended by a takeover of ours, say). */
static int start(chd_group *g, slot *sl, char *err, size_t size)
{
  chd_sub *s = sub_of(g, sl);
  int status_index = CHD_STATUS_MAX_SUBS + (int)(sl - g->slots);

  if (chd_sub_init_slot(s, g->ctx, sl->sub, sl->member, status_index, &chd_sub_store_pg,
                        &sl->arg, err, size) == 0) {
    s->ahead_until_ms = &g->ahead_until_ms;
    return 0;
  }
  chd_sub_release(s);
  if (!chd_mdb_broken(g->ctx->mdb) && !(g->ctx->view && chd_viewdb_broken(g->ctx->view)))
    return -1;
  if (chd_mdb_broken(g->ctx->mdb) && chd_mdb_connect(g->ctx->mdb) != CHD_STORE_OK)
    return -1;
  if (g->ctx->view && chd_viewdb_broken(g->ctx->view) &&
      chd_viewdb_connect(g->ctx->view) != CHD_STORE_OK)
    return -1;
  if (chd_sub_init_slot(s, g->ctx, sl->sub, sl->member, status_index, &chd_sub_store_pg,
                        &sl->arg, err, size) != 0)
    return -1;
  s->ahead_until_ms = &g->ahead_until_ms;
  return 0;
}

/* Claim slot `row`; start its subscription. */
static void claim(chd_group *g, slot *sl, const chd_lease_row *row)
{
  chd_log_fields f = fields(g, sl);
  chd_sub *s = sub_of(g, sl);
  bool takeover = row->owner[0] && strcmp(row->owner, g->owner) != 0, got = false;
  char ended[64] = "", err[1400];
  int64_t generation = 0, at;
  chd_status_slot *st;

  if (takeover) {
    /* a paused owner may sit in an open transaction, holding row locks:
     * end its backends, so its locks go and it can never commit */
    const chd_lease_backend *bes[2] = { &row->store, &row->view };
    const chd_lease_on ons[2] = { CHD_LEASE_ON_STORE, CHD_LEASE_ON_VIEW };
    for (int i = 0; i < 2; i++) {
      bool done = false;
      if (bes[i]->pid <= 0 || (ons[i] == CHD_LEASE_ON_VIEW && !g->ctx->view))
        continue;
      if (chd_lease_terminate(&g->ls, ons[i], bes[i], &done) != CHD_STORE_OK)
        chd_log(CH_LOG_WARN, &f, "taking over slot %" PRId64 " of %s: %s", sl->member,
                sl->group, chd_lease_error(&g->ls));
      else if (done)
        snprintf(ended + strlen(ended), sizeof ended - strlen(ended), "%s%d",
                 ended[0] ? ", " : "", bes[i]->pid);
    }
  }
  our_backends(g);
  if (chd_lease_claim(&g->ls, sl->group, sl->member, row->generation, g->owner, g->lease_ms,
                      &g->store_be, g->view_be.pid ? &g->view_be : NULL, &got, &generation)
      != CHD_STORE_OK) {
    chd_log(CH_LOG_WARN, &f, "cannot claim slot %" PRId64 " of %s: %s", sl->member, sl->group,
            chd_lease_error(&g->ls));
    return;
  }
  if (!got)
    return;                     /* another host was quicker */
  sl->held = true;
  sl->generation = generation;
  sl->fence.generation = generation;
  if (start(g, sl, err, sizeof err) != 0) {
    chd_log(CH_LOG_ERROR, &f, "claimed slot %" PRId64 " of %s but cannot start it: %s;"
            " releasing it", sl->member, sl->group, err);
    chd_lease_release(&g->ls, sl->group, sl->member, g->owner, generation);
    drop(g, sl);
    return;
  }
  at = g->args.poisoned ? g->args.poisoned[sl->sub] : 0;
  if (at > 0 && g->args.poisoned_slot && g->args.poisoned_slot[sl->sub] == sl->member &&
      s->position < at) {
    s->stop_before = at;
    snprintf(s->stop_reason, sizeof s->stop_reason, "%s", g->args.poison_reason
             ? g->args.poison_reason : "it crashed the worker repeatedly");
  }
  if ((st = status_of(g, sl)) != NULL) {
    st->generation = generation;
    st->since_ms = chd_wall_ms();
    st->renewed_ms = st->since_ms;
    st->s.position = s->position;
    st->owned = 1;
  }
  if (takeover) {
    chd_log(CH_LOG_WARN, &f, "took over slot %" PRId64 " of %s (generation %" PRId64 ") from"
            " %s, whose lease expired %" PRId64 " ms ago%s%s", sl->member, sl->group,
            generation, row->owner, -row->expires_in_ms, ended[0] ? "; ended its backends "
            : "", ended);
    if (chd_status_self)
      chd_status_self->takeovers++;
  } else {
    chd_log(CH_LOG_INFO, &f, "claimed slot %" PRId64 " of %s (generation %" PRId64 ")",
            sl->member, sl->group, generation);
  }
  chd_log(CH_LOG_INFO, &f, "Started %s at global position %" PRId64 " of %s",
          s->subscriber_id, s->position + 1, s->desc->stream_name);
}

/* Hold this host's share of subscription k's slots. */
static void balance(chd_group *g, size_t k, int64_t rank)
{
  slot *first = &g->slots[k * (size_t)g->size];
  int64_t target = chd_group_target(g->size, g->members, rank), held = 0;
  chd_lease_row *rows = NULL;
  size_t n = 0;

  for (int64_t i = 0; i < g->size; i++)
    held += first[i].held;
  for (int64_t i = g->size - 1; i >= 0 && held > target; i--)
    if (first[i].held) {
      char why[96];
      snprintf(why, sizeof why, "to balance the group (%" PRId64 " hosts)", g->members);
      give_up(g, &first[i], why);
      held--;
    }
  if (held >= target)
    return;
  if (chd_lease_claimable(&g->ls, first->group, g->size, &rows, &n) != CHD_STORE_OK) {
    chd_log_fields f = fields(g, first);
    chd_log(CH_LOG_WARN, &f, "cannot read the free slots: %s", chd_lease_error(&g->ls));
    return;
  }
  for (size_t r = 0; r < n && held < target && !(g->ctx->stop && *g->ctx->stop); r++) {
    slot *sl = &first[rows[r].slot];
    if (sl->held)
      continue;
    claim(g, sl, &rows[r]);
    held += sl->held;
  }
  free(rows);
}

void chd_group_tick(chd_group *g)
{
  size_t n = g->nsubs * (size_t)g->size;
  int64_t now = chd_now_ms();
  bool dropped = false;

  for (size_t j = 0; j < n; j++)
    if (g->slots[j].held && g->subs[j].state == CHD_SUB_LOST) {
      lost(g, &g->slots[j], "a commit found its lease taken over");
      dropped = true;
    }
  if (now < g->next_renew_ms && !dropped)
    return;
  if (!reachable(g)) {
    renewal_failed(g, "no connection to the database of the leases");
    return;
  }
  our_backends(g);
  if (renew(g, now) != 0)
    return;
  for (size_t k = 0; k < g->nsubs && !(g->ctx->stop && *g->ctx->stop); k++)
    balance(g, k, g->ranks[k]);
  if (chd_status_self) {
    chd_status_self->group_members = g->members;
    for (size_t j = 0; j < n; j++)
      if (g->slots[j].held)
        chd_status_self->slots[j].renewed_ms = chd_wall_ms();
  }
  g->next_renew_ms = chd_now_ms() + (g->lease_ms / 4 > 250 ? g->lease_ms / 4 : 250);
}

void chd_group_leave(chd_group *g)
{
  size_t n = g->nsubs * (size_t)g->size;

  for (size_t j = 0; j < n; j++)
    if (g->slots[j].held)
      give_up(g, &g->slots[j], "on stopping");
  for (size_t k = 0; k < g->nsubs; k++)
    if (chd_lease_leave(&g->ls, g->slots[k * (size_t)g->size].group, g->owner)
        != CHD_STORE_OK) {
      chd_log_fields f = fields(g, NULL);
      chd_log(CH_LOG_WARN, &f, "cannot leave the group: %s", chd_lease_error(&g->ls));
    }
}

void chd_group_free(chd_group *g)
{
  if (!g)
    return;
  for (size_t j = 0; g->subs && j < g->nsubs * (size_t)g->size; j++)
    if (g->slots && g->slots[j].held)
      chd_sub_release(&g->subs[j]);
  free(g->subs);
  free(g->slots);
  free(g->ranks);
  free(g);
}
