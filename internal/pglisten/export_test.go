package pglisten

// SetReadHook makes l call f, on the goroutine that reads the connection,
// with each notification it reads before queueing it for Handle; a test
// knows from it when a burst is all in (the queue, or held for it). Call it
// before Run.
func (l *Listener) SetReadHook(f func(Notification)) { l.readHook = f }
