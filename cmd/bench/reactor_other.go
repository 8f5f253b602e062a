//go:build !linux

package main

import "errors"

// Without epoll, each reader has its goroutine (client.read).
type reactors struct{}

func newReactors(n, clients int, delayACKs bool) (*reactors, error) { return nil, errNoReactor }

func (r *reactors) attach(c *client) (bool, error) { return false, nil }

func (r *reactors) close() {}

func (c *client) writeRaw(op byte, p []byte) error { return nil }

var errNoReactor = errors.New("no epoll here")
