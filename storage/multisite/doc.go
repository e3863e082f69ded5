// Package multisite keeps a Reprise repository on several sites at once,
// so that losing one of them loses nothing.
//
// A hosting provider once kept its customers' backups in the building next
// to their servers; one fire took both. A [Store] is a [storage.Storage]
// made of several [Site]s, each a storage of its own (a disk, a bucket at
// another provider) labelled with its failure domain: the building, region
// or provider that one disaster can take out as a whole. Every object is
// written to every site; reads use whichever site answers well. Above the
// Store nothing changes: the repository sees one storage.
//
// # Configuration
//
// [New] refuses a configuration whose sites all share one failure domain
// (one fire would take every copy) unless [Options.AllowSingleDomain] is
// set, for tests and laptops. Site names must be unique and usable in a
// storage key (they name the journal objects described below, which the
// other sites store: choose names that say nothing you would not tell
// every provider).
//
// # Writes
//
//   - A put goes to every site at the same time, never one after another.
//   - It succeeds when the object is durable: held by at least
//     [Options.WriteQuorum] sites (all of them by default) spanning at
//     least [Options.MinDomains] failure domains (by default two, when the
//     sites span two). With the defaults, a write that succeeded survives
//     the loss of any one failure domain.
//   - A put waits for every site to answer, bounded by the caller's
//     context: a slow site slows writes down. This is deliberate. The
//     storage contract forbids reading the caller's data after Put
//     returns, so finishing the slow sites in the background would mean
//     holding a private copy of every object in memory, and a backup that
//     reports success with writes still in flight could not say what it
//     had really stored. [Options.SlowSiteGrace] bounds the wait instead:
//     once the write is durable, the sites still writing get that much
//     longer, then are cancelled and recorded as having missed it. A site
//     that hangs rather than fails stalls writes until then: give the
//     sites' drivers request timeouts. Retries belong around each site
//     (retry.New on the site's storage), not around the Store, which
//     would rewrite every site for the failure of one.
//   - A site that misses a write (down, failing, cut off) is recorded in
//     memory ([Store.Missed]) and in a journal object written on the
//     sites that took the write, under
//     multisite/missed/<site>/<time>-<random>, listing the keys the site
//     missed. Any later process finds these journals and catches the site
//     up ([Store.CatchUp]). The journal holds nothing but key names, which
//     are opaque hex names (random, or keyed hashes) that every site
//     already stores; the journal objects are hidden from List. Catch-up
//     copies are put with retention (S3 Object Lock) for the keys
//     [Store.RetainCopies] names, as the originals were.
//   - A put that is not durable fails with an error wrapping [ErrQuorum]
//     and each failing site's error (naming the site). The sites that
//     took it keep their copy and the others are journaled: unlike a
//     single storage, a failed multi-site put may leave the object on
//     some sites. Reprise names nearly every object at random, so this
//     costs nothing but space until catch-up or garbage collection.
//   - Create-only puts (IfNotExist), which Reprise uses for every object,
//     also go to every site at once; then one site decides who created
//     the key: the first site, in configured order, that answered (list
//     the most reliable site first). If it answered ErrExist, the key was
//     taken: the put withdraws the copies it made on other sites and
//     reports ErrExist. If it took the object, the caller is the creator;
//     a site that answered ErrExist holds a losing concurrent creator's
//     copy, which that creator is withdrawing: the put waits for it to go
//     (up to two seconds) and creates its own copy there. So concurrent
//     creators of one key get exactly one winner, and every site ends up
//     with the winner's bytes. A copy that does not go away belongs to an
//     object that existed before (the deciding site had lost it): the
//     existing object wins, the put withdraws its copies and reports
//     ErrExist, and catch-up restores the existing object where it lacks.
//     When sites before the deciding one failed for the put, it checks
//     them: one holding the put's own bytes took the write and only lost
//     its answer; one holding other bytes answered a rival creator, who
//     decided there and wins. Caveats: while creators race, a reader may
//     briefly be served a losing creator's copy from a site other than the
//     deciding one; and if the deciding site fails for some creators but
//     not others, a race may end with no winner at all (every creator
//     gets ErrExist, the key stays free, a retry settles it), never with
//     two. A create-only put that falls short of the quorum keeps
//     its copies (a concurrent reader may already use them), so a retry
//     reports ErrExist; its error is therefore not transient.
//   - A delete goes to every site at once and succeeds when the object is
//     gone from every site that answered; the sites that did not are
//     journaled as missed deletes.
//
// # Reads
//
//   - Get and Stat try the sites in order of health: sites holding a copy
//     recorded as stale or bad last, then sites that failed recently, then
//     by a moving average of their latency.
//   - When a site fails, lacks the object or refuses the range while
//     another site serves it, the read moves on to the next site, and the
//     bad copy is recorded ([Store.BadCopies]). A reader that breaks
//     midway resumes on another site at the offset it had reached. A read
//     of an exact range (n >= 0) that ends early is size-checked: the
//     Store asks the sites for the object's size and, if any holds more,
//     records the short copy and resumes from a complete one.
//     Whole-object reads (n < 0) are not size-checked, to save a request
//     per read.
//   - A copy on a site known to have missed the object's deletion is
//     never served nor listed. The Store knows what it recorded itself
//     and, after a CatchUp, what the journals of other processes list
//     as still to do; until then, a process may see an object another
//     process deleted while a site was down. Run CatchUp when opening a
//     repository after an outage.
//   - A read reports ErrNotExist only when fewer sites failed to answer
//     than the write quorum, that is when every durable object would
//     have been found.
//   - Bit flips and same-size damage cannot be seen by storage alone.
//     Reprise authenticates every object it reads; on a failure it reads
//     the other copies through [storage.Replicated] ([Store.Replicas])
//     and reports the bad one with [Store.ReportBadCopy], after which
//     reads try that copy last and the next catch-up replaces it.
//   - List returns the union of every site's listing, in lexical order,
//     each key once. A site that cannot be listed is left out (and
//     recorded); List fails only when no site can be listed. Objects held
//     only by a site that failed to list are then missing from the
//     listing.
//
// # Repair
//
//   - [Store.CatchUp] brings every site in line for what was recorded:
//     missed writes and deletes (from memory and from every journal found)
//     and bad copies. The sites that did not miss an object are the
//     reference: what they hold is copied to the others, what they lack
//     is deleted from the others. A site holding no object at all while
//     others do (a new or wiped site) receives a full copy. CatchUp is
//     idempotent, reports exactly what it copied and removed, deletes the
//     journals it completed and keeps what it could not do for next time.
//   - [Store.Compare] lists every site and reports, per key, the sites
//     lacking it or holding another size. [Store.Resync] copies to every
//     site what Compare shows it lacks: use it when a site lost objects
//     without any record. Neither reads contents: equal sizes with
//     different bytes are for an authenticated repair above this layer.
//   - [Store.SiteStatus] and [Store.Stats] tell what the Store has seen.
//
// # Limits
//
// Objects are meant to be immutable, as in Reprise, whose keys name their
// contents or are random. Concurrent plain puts of different bytes under
// one key may leave different sites holding different (whole) versions, a
// read resumed on another site after a failure could then splice two
// versions, and catch-up takes a copy of the right size for an up-to-date
// one (it replaces same-size copies only when they were reported bad).
// Missed writes and bad copies are kept in memory up to a bound (about a
// million); beyond it they are only journaled. Every write a site misses
// costs one small journal object on each site that took it, until
// catch-up.
package multisite
