package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgrelay/pgrelay/internal/event"
)

// Publisher publishes one row. PublishOnce must not publish twice for one
// dedupeID (redisbus.Publisher keeps that promise within its history TTL):
// it reports dup instead.
type Publisher interface {
	PublishOnce(ctx context.Context, channel, payload, dedupeID string) (id string, dup bool, err error)
}

// Options configures a Drainer. Table and Publisher are required.
type Options struct {
	Table     Table
	Publisher Publisher
	// MaxPayload is the largest payload published, in bytes; a larger row
	// is moved to the rejected table. Zero means DefaultMaxPayload.
	MaxPayload int
	// BatchSize is how many rows one read fetches. Zero means 500.
	BatchSize int
	// BatchBytes bounds the payload bytes one read fetches (a row larger
	// than that comes alone). Zero means 4 MiB.
	BatchBytes int
	// Timeout bounds each statement and each publish. Zero means 5s.
	Timeout time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Stats counts what a Drainer did.
type Stats struct {
	Published  uint64 // rows published
	Duplicates uint64 // rows already published (by a previous leader) and now deleted
	Rejected   uint64 // rows refused and moved out of the way
}

// Drainer publishes an outbox table's rows. Drain is not safe to call
// concurrently; Stats is.
type Drainer struct {
	opts                                   Options
	log                                    *slog.Logger
	published, duplicates, rejected        atomic.Uint64
	readSQL, deleteSQL, rejectSQL, dropSQL string
}

// NewDrainer returns a Drainer for opts.
func NewDrainer(opts Options) (*Drainer, error) {
	if _, err := ParseTable(opts.Table.String()); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	if opts.Publisher == nil {
		return nil, errors.New("outbox: no publisher")
	}
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = DefaultMaxPayload
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 4 << 20
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	t := opts.Table.sql()
	return &Drainer{
		opts: opts,
		log:  opts.Logger.With("table", opts.Table.String()),
		// The oldest rows, at most BatchSize of them and, after the first,
		// within BatchBytes. The payload of a row over the limit is not
		// read at all: octet_length needs only the value's header.
		readSQL: `SELECT id, coalesce(channel, ''), created_at, size, CASE WHEN size <= $2 THEN payload END
FROM (
	SELECT *, sum(CASE WHEN size <= $2 THEN size ELSE 0 END) OVER (ORDER BY id) - CASE WHEN size <= $2 THEN size ELSE 0 END AS before
	FROM (SELECT id, channel, payload, created_at, coalesce(octet_length(payload), -1) AS size FROM ` + t + ` ORDER BY id LIMIT $1) b
) w
WHERE before < $3
ORDER BY id`,
		deleteSQL: `DELETE FROM ` + t + ` WHERE id = ANY($1)`,
		rejectSQL: `WITH moved AS (DELETE FROM ` + t + ` WHERE id = $1 RETURNING id, channel, payload, created_at)
INSERT INTO ` + opts.Table.rejected() + ` (id, channel, payload, created_at, reason)
SELECT id, channel, payload, created_at, $2 FROM moved`,
		dropSQL: `DELETE FROM ` + t + ` WHERE id = $1`,
	}, nil
}

// Stats returns the counts so far.
func (d *Drainer) Stats() Stats {
	return Stats{Published: d.published.Load(), Duplicates: d.duplicates.Load(), Rejected: d.rejected.Load()}
}

// row is one outbox row; payload is nil when it was not read.
type row struct {
	id      int64
	channel string
	created time.Time
	size    int64
	payload *string
}

// dedupeID names a row for PublishOnce. The creation time is part of it so
// that a row id used again (the table recreated, its sequence reset) is not
// taken for a row already published.
func (d *Drainer) dedupeID(r row) string {
	return d.opts.Table.String() + ":" + strconv.FormatInt(r.id, 10) + ":" + strconv.FormatInt(r.created.UnixMicro(), 10)
}

// Drain publishes the table's rows, oldest first, and deletes each batch
// once it is published, until a read finds less than a full batch. It runs
// on conn, outside any transaction, and leaves conn idle.
//
// Rows are never skipped: ids come from a sequence and commit out of order,
// so a row may become visible after rows with higher ids were published.
// Drain keeps no high-water mark; it deletes what it published and reads
// whatever is left, so such a row is published by the next drain.
func (d *Drainer) Drain(ctx context.Context, conn *pgx.Conn) error {
	for {
		rows, bytes, err := d.read(ctx, conn)
		if err != nil {
			return err
		}
		var done []int64
		for _, r := range rows {
			if reason := d.refuse(r); reason != "" {
				if err := d.reject(ctx, conn, r, reason); err != nil {
					return err
				}
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
			id, dup, err := d.opts.Publisher.PublishOnce(pctx, r.channel, *r.payload, d.dedupeID(r))
			cancel()
			if err != nil {
				// What this batch published stays in the table: the next
				// drain finds it published already (dup) and deletes it.
				return fmt.Errorf("publish row %d: %w", r.id, err)
			}
			if dup {
				d.duplicates.Add(1)
				d.log.Debug("outbox row already published", "row", r.id, "channel", r.channel, "id", id)
			} else {
				d.published.Add(1)
				d.log.Debug("published", "row", r.id, "channel", r.channel, "id", id, "bytes", r.size)
			}
			done = append(done, r.id)
		}
		if len(done) > 0 {
			if err := d.exec(ctx, conn, d.deleteSQL, done); err != nil {
				return fmt.Errorf("delete %d published rows: %w", len(done), err)
			}
		}
		if len(rows) < d.opts.BatchSize && bytes < int64(d.opts.BatchBytes) {
			return nil
		}
	}
}

// read fetches the next batch and the payload bytes it holds.
func (d *Drainer) read(ctx context.Context, conn *pgx.Conn) ([]row, int64, error) {
	qctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	rs, _ := conn.Query(qctx, d.readSQL, d.opts.BatchSize, d.opts.MaxPayload, d.opts.BatchBytes)
	var rows []row
	var bytes int64
	var r row
	_, err := pgx.ForEachRow(rs, []any{&r.id, &r.channel, &r.created, &r.size, &r.payload}, func() error {
		rows = append(rows, r)
		if r.payload != nil {
			bytes += r.size
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("read outbox: %w%s", err, hint(err))
	}
	return rows, bytes, nil
}

// refuse says why r cannot be published, or "" if it can.
func (d *Drainer) refuse(r row) string {
	switch {
	case r.size < 0:
		return "payload is null"
	case r.payload == nil:
		return fmt.Sprintf("payload of %d bytes is over the limit of %d bytes", r.size, d.opts.MaxPayload)
	}
	if err := event.ValidateChannel(r.channel); err != nil {
		return fmt.Sprintf("channel %q: %v", r.channel, err)
	}
	return ""
}

// reject moves r to the rejected table, with reason. If that table does
// not exist (a schema not made by Migrate), r is deleted: one bad row must
// not stop every channel. Either way it is logged as an error and counted.
func (d *Drainer) reject(ctx context.Context, conn *pgx.Conn, r row, reason string) error {
	movedTo := d.opts.Table.Name + "_rejected"
	err := d.exec(ctx, conn, d.rejectSQL, r.id, reason)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		movedTo = "nowhere: deleted, the rejected table is missing"
		err = d.exec(ctx, conn, d.dropSQL, r.id)
	}
	if err != nil {
		return fmt.Errorf("reject row %d: %w", r.id, err)
	}
	n := d.rejected.Add(1)
	d.log.Error("outbox row refused", "row", r.id, "channel", r.channel, "bytes", r.size,
		"created_at", r.created, "reason", reason, "moved_to", movedTo, "rejected_total", n)
	return nil
}

func (d *Drainer) exec(ctx context.Context, conn *pgx.Conn, sql string, args ...any) error {
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	_, err := conn.Exec(ctx, sql, args...)
	return err
}

// hint adds what to do about a missing outbox table.
func hint(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		return " (apply migrations/001_outbox.sql, or set RELAY_OUTBOX_MIGRATE=true)"
	}
	return ""
}
