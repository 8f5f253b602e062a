package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// check is `edge check [-channel NAME] [-token-required] [-timeout D] [URL]`,
// the probe the Helm chart's `helm test` pod runs from the edge image (which
// has no shell and no curl). It asks URL's /readyz for a 200, then opens a
// WebSocket on URL's /ws?channel=NAME and closes it normally; with
// -token-required (an edge with EDGE_AUTH=jwt) it instead expects that
// WebSocket, sent without a token, to be refused with 401. URL defaults to
// http://127.0.0.1:8080; a trailing /readyz is accepted. It reads no EDGE_*
// variable. Exit status: 0 when both steps work, 1 when one fails, 2 on bad
// arguments.
func check(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("edge check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	channel := fs.String("channel", "data", "channel to subscribe to")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on the whole check")
	tokenRequired := fs.Bool("token-required", false, "the edge requires a token: expect /ws without one to be refused with 401")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: edge check [-channel NAME] [-token-required] [-timeout D] [URL]\n\n"+
			"GETs URL/readyz (expects 200), then opens and closes a WebSocket on URL/ws?channel=NAME\n"+
			"(with -token-required: expects that WebSocket, without a token, to be refused with 401).\n"+
			"URL defaults to http://127.0.0.1:8080.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	base := "http://127.0.0.1:8080"
	switch fs.NArg() {
	case 0:
	case 1:
		base = fs.Arg(0)
	default:
		fmt.Fprintf(stderr, "edge check: at most one URL, got %q\n", fs.Args())
		return 2
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "edge check: URL must be http(s)://host[:port][/path], got %q\n", base)
		return 2
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/readyz"), "/")
	u.RawQuery, u.Fragment = "", ""

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := checkEdge(ctx, u, *channel, *tokenRequired, stdout); err != nil {
		fmt.Fprintf(stderr, "edge check: %v\n", err)
		return 1
	}
	return 0
}

// checkEdge runs the two steps of check against the edge at base.
func checkEdge(ctx context.Context, base *url.URL, channel string, tokenRequired bool, stdout io.Writer) error {
	ready := base.JoinPath("/readyz").String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ready, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", ready, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s: %s", ready, resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintf(stdout, "ok: %s: %s\n", ready, strings.TrimSpace(string(body)))

	ws := base.JoinPath("/ws")
	ws.Scheme = map[string]string{"http": "ws", "https": "wss"}[base.Scheme]
	ws.RawQuery = url.Values{"channel": {channel}}.Encode()
	c, resp, err := websocket.Dial(ctx, ws.String(), nil)
	if tokenRequired {
		if err == nil {
			c.CloseNow()
			return fmt.Errorf("websocket %s: opened without a token, though -token-required", ws)
		}
		if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("websocket %s without a token: %w; want 401", ws, err)
		}
		fmt.Fprintf(stdout, "ok: %s: refused without a token (%s)\n", ws, resp.Status)
		return nil
	}
	if err != nil {
		return fmt.Errorf("websocket %s: %w", ws, err)
	}
	if err := c.Close(websocket.StatusNormalClosure, "edge check done"); err != nil {
		return fmt.Errorf("websocket %s: close: %w", ws, err)
	}
	fmt.Fprintf(stdout, "ok: %s: opened and closed\n", ws)
	return nil
}
