/* proto/cork.h: batch the frames of a burst into one write per connection.
 *
 * Between proto_cork() and the matching proto_uncork(), frames written by the
 * RPC server and clients are appended to their connection's buffer instead of
 * being written one syscall each; the outermost uncork writes each buffer at
 * once. libproto corks around each read's dispatch; a caller that answers
 * many requests from one callback (a commit group flushing its replies) corks
 * around that. Calls nest. Loop thread only.
 */
#ifndef PROTO_CORK_H
#define PROTO_CORK_H

void proto_cork(void);
void proto_uncork(void);

#endif
