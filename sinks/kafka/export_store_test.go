package kafka

// Test hooks of the checkpoint store, for package kafka_test.

// FreezeStore stops st's lease refresher without releasing the key, as
// kill -9 (or a process stopped in a debugger, or cut off from Kafka)
// would: no more records appear for the key unless st commits.
func FreezeStore(st *Store) { st.stopRefresher() }

// WithBeforeClaim returns c with f run just before the store writes its
// claim record (after it decided to claim), to put another bridge's record
// between the two.
func WithBeforeClaim(c StoreConfig, f func()) StoreConfig {
	c.beforeClaim = f
	return c
}
