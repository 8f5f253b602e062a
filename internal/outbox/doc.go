// Package outbox is the relay's outbox source: a table the application
// inserts messages into, in its own transactions, and the Drainer that
// publishes them.
//
// Schema.SQL renders the migration (schema.sql.tmpl; migrations/001_outbox.sql
// in the repository is its rendering for DefaultSchema, kept identical by a
// test) and Migrate applies it: the table (id, channel, payload, created_at)
// with a CHECK on the payload size, a <table>_rejected table for rows the
// relay refuses, and a statement-level trigger that sends an empty
// notification on the wake channel. The notification only wakes the relay;
// the rows carry the data, and may be larger than NOTIFY's 8000 bytes.
//
// A Drainer runs on the leader's connection (pglisten's Drain hook): it reads
// the oldest rows, publishes each with PublishOnce under the row's identity,
// and deletes them once published. A leader that dies between publish and
// delete leaves the rows in place; the next leader publishes them again and
// PublishOnce drops the repeat, so a leader change loses nothing and
// duplicates nothing (within the dedupe window, the history TTL). Because it
// keeps no high-water mark, a row whose transaction commits after rows with
// higher ids were published is not skipped: it is published by the next
// drain, after them. Rows that cannot be published (a payload over the
// limit, an invalid channel) are moved to the rejected table, logged as
// errors and counted, never cut.
//
// Start with Migrate and NewDrainer. A Drainer is used from one goroutine.
package outbox
