/*
 * store.h - the result code of the store layer.
 *
 * The store layer (host/store/: the Message DB client, the view database,
 * positions, parked streams, stream names and uuids) is built as a library
 * of its own and includes nothing of the runtime. Every call of it that can
 * fail returns a chd_store_rc; on anything but CHD_STORE_OK the handle the
 * call was made on (chd_mdb, chd_viewdb, chd_position_store) holds a
 * one-line description of the failure, valid until its next call.
 */
#ifndef CHD_STORE_H
#define CHD_STORE_H

typedef enum chd_store_rc {
  CHD_STORE_OK = 0,
  CHD_STORE_ERROR = -1,         /* any other database error; also a connection
                                   refused for good (asking again cannot help) */
  CHD_STORE_CONFLICT = -2,      /* wrong expected version: see chd_mdb_conflict_info() */
  CHD_STORE_DUPLICATE_ID = -3,  /* a message with this id exists already */
  CHD_STORE_DISCONNECTED = -4,  /* no connection: server down or connection lost */
  CHD_STORE_INVALID = -5,       /* bad argument, refused before the database */
  CHD_STORE_INTERRUPTED = -6,   /* a reconnection stopped by its interrupt flag */
  CHD_STORE_FENCED = -7         /* a slot's lease is no longer the caller's (lease.h):
                                   nothing was committed for it */
} chd_store_rc;

#endif /* CHD_STORE_H */
