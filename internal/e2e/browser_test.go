package e2e

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/pgrelay/pgrelay/internal/testenv"
)

// chromiumPath is Debian's Chromium; `make test` installs it when missing.
const chromiumPath = "/usr/bin/chromium"

const (
	// browserTimeout bounds everything a browser test does with its browser:
	// when it passes, Chromium is killed and every pending action fails.
	browserTimeout = 20 * time.Second
	// stepTimeout bounds one wait for the page to change, so that a page that
	// never changes fails with a description of what it shows instead.
	stepTimeout = 5 * time.Second
)

// TestBrowserPageShowsNotify loads the demo page in headless Chromium and
// checks that NOTIFYs reach its DOM: the connection state, the colour bars
// (payloads matched case-insensitively after trimming, repeats counted) and
// the log.
func TestBrowserPageShowsNotify(t *testing.T) {
	requireChromium(t)
	prefix := testenv.Name("browser")
	channel := testenv.Name("data")
	r := startRelay(t, "relay", prefix, []string{channel})
	e := startEdge(t, "edge", prefix)
	waitLeader(t, r)
	conn := testenv.Conn(t)

	b := startBrowser(t)
	b.open(e.url("/?channel=" + url.QueryEscape(channel)))
	b.waitFor(`#state[data-state="connected"]`, "the page connects")

	s := b.snapshot()
	if s.State != "connected" || s.StateText != "connected" {
		t.Errorf("#state: data-state %q, text %q; want both %q", s.State, s.StateText, "connected")
	}
	if want := "ws://" + e.addr + "/ws?channel=" + channel; s.SocketURL != want {
		t.Errorf("#url shows %q, want %q", s.SocketURL, want)
	}
	s.wantBars(t, "before any NOTIFY", 0, 0, 0)
	if len(s.Entries) != 0 {
		t.Errorf("before any NOTIFY the log has entries: %+v", s.Entries)
	}

	notify(t, conn, channel, "green")
	b.waitFor(`#bar-green[data-count="1"]`, `the first "green" counts`)
	s = b.snapshot()
	s.wantBars(t, `after "green"`, 0, 1, 0)
	s.wantNewest(t, `after "green"`, 1, channel, "green")

	// The same payload again must show again: nothing deduplicates it.
	notify(t, conn, channel, "green")
	b.waitFor(`#bar-green[data-count="2"]`, `the second "green" counts`)
	s = b.snapshot()
	s.wantBars(t, `after "green" twice`, 0, 2, 0)
	s.wantNewest(t, `after "green" twice`, 2, channel, "green")
	if len(s.Entries) == 2 && s.Entries[0].ID == s.Entries[1].ID {
		t.Errorf("the two %q entries have the same data-id %q", "green", s.Entries[0].ID)
	}

	// Colours match after trimming and ignoring case; the log keeps the
	// payload as sent.
	notify(t, conn, channel, " Blue ")
	b.waitFor(`#bar-blue[data-count="1"]`, `" Blue " counts as blue`)
	s = b.snapshot()
	s.wantBars(t, `after " Blue "`, 0, 2, 1)
	s.wantNewest(t, `after " Blue "`, 3, channel, " Blue ")

	b.screenshot()
}

// requireChromium fails the test when Chromium is missing: browser tests never
// skip, or a machine without a browser would pass them silently.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("no headless browser: %v\ninstall Debian's chromium: apt-get install -y chromium; `make test` does it", err)
	}
}

// liveBrowsers counts the browsers that tests are running, so that a test
// checks for leaked chromedp goroutines only when no other browser owns some.
var liveBrowsers atomic.Int32

// browser is one headless Chromium with one tab.
type browser struct {
	t   *testing.T
	ctx context.Context // the tab; done at browserTimeout at the latest
}

// startBrowser starts Chromium and opens a blank tab. The browser is closed,
// and checked to have left no process or goroutine behind, at cleanup.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	requireChromium(t)
	// The profile directory is removed at cleanup, after the browser stops:
	// cleanups run last in, first out.
	dir := t.TempDir()
	output := &logBuf{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in containers
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(1024, 900),
		chromedp.CombinedOutput(output),
	)
	deadline, stopDeadline := context.WithTimeout(context.Background(), browserTimeout)
	allocCtx, stopAlloc := chromedp.NewExecAllocator(deadline, opts...)
	ctx, stopTab := chromedp.NewContext(allocCtx,
		chromedp.WithLogf(t.Logf), chromedp.WithErrorf(t.Logf))
	liveBrowsers.Add(1)

	consoleDone := make(chan struct{})
	t.Cleanup(func() {
		// Close Chromium gracefully so that it ends its child processes, then
		// cancel everything; stopAlloc kills a Chromium that is still running
		// and waits for it.
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := chromedp.Cancel(cctx); err != nil && ctx.Err() == nil {
			t.Logf("closing chromium: %v", err)
		}
		cancel()
		stopTab()
		stopAlloc()
		stopDeadline()
		<-consoleDone
		checkNoChromium(t, dir)
		if liveBrowsers.Add(-1) == 0 {
			checkNoChromedpGoroutines(t)
		}
		if t.Failed() {
			t.Logf("--- chromium output ---\n%s", output.String())
		}
	})

	if err := chromedp.Do(ctx); err != nil {
		close(consoleDone)
		t.Fatalf("starting %s: %v\n--- chromium output ---\n%s", chromiumPath, err, output.String())
	}

	// The page's console and uncaught exceptions go to the test log; an
	// exception in the page is a bug, so it fails the test.
	messages := chromedp.Console(ctx)
	go func() {
		defer close(consoleDone)
		for m, err := range messages {
			if err != nil {
				return // the tab is closing
			}
			where := m.URL
			if where != "" {
				where = " (" + where + ":" + strconv.FormatInt(m.Line+1, 10) + ")"
			}
			if m.IsException() {
				t.Errorf("browser: uncaught exception: %s%s", m.Text, where)
			} else {
				t.Logf("browser console.%s: %s%s", m.Type, m.Text, where)
			}
		}
	}()
	return &browser{t: t, ctx: ctx}
}

// open loads the page at u and checks that it was served.
func (b *browser) open(u string) {
	b.t.Helper()
	resp, err := chromedp.Run(b.ctx, chromedp.NavigateResponse(u))
	if err != nil {
		b.t.Fatalf("navigate to %s: %v", u, err)
	}
	if resp.Status != 200 {
		b.t.Fatalf("navigate to %s: HTTP %d %s", u, resp.Status, resp.StatusText)
	}
}

// waitFor waits until an element matching the CSS selector is visible; what
// names the expected change for the failure message, which also shows the page.
func (b *browser) waitFor(sel, what string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		b.t.Fatalf("waiting until %s (%s): %v\nthe page shows: %s", what, sel, err, b.snapshot())
	}
}

// pageState is what the demo page shows, read from its DOM hooks.
type pageState struct {
	State     string              `json:"state"`     // #state data-state
	StateText string              `json:"stateText"` // #state text
	SocketURL string              `json:"socketURL"` // #url text
	Bars      map[string]barState `json:"bars"`      // by colour
	Entries   []entryState        `json:"entries"`   // #log li.entry, newest first
	Err       string              `json:"-"`         // why the page could not be read
}

type barState struct {
	Count string `json:"count"` // data-count
	Shown string `json:"shown"` // text of .bar-count
}

type entryState struct {
	Channel string `json:"channel"` // data-channel
	ID      string `json:"id"`      // data-id
	Payload string `json:"payload"` // text of .payload
}

const snapshotJS = `(() => {
	const text = (el) => (el ? el.textContent : null);
	const state = document.getElementById('state');
	const bars = {};
	for (const c of ['red', 'green', 'blue']) {
		const el = document.getElementById('bar-' + c);
		bars[c] = el ? { count: el.dataset.count ?? null, shown: text(el.querySelector('.bar-count')) } : null;
	}
	return {
		state: state ? state.dataset.state ?? null : null,
		stateText: text(state),
		socketURL: text(document.getElementById('url')),
		bars,
		entries: [...document.querySelectorAll('#log li.entry')].map((li) => ({
			channel: li.dataset.channel ?? null,
			id: li.dataset.id ?? null,
			payload: text(li.querySelector('.payload')),
		})),
	};
})()`

// snapshot reads the page; a page it cannot read gives a state with Err set.
func (b *browser) snapshot() pageState {
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](snapshotJS))
	if err != nil {
		return pageState{Err: err.Error()}
	}
	return s
}

func (s pageState) String() string {
	if s.Err != "" {
		return "(cannot read the page: " + s.Err + ")"
	}
	var sb strings.Builder
	sb.WriteString("state=" + strconv.Quote(s.State) + " text=" + strconv.Quote(s.StateText) +
		" url=" + strconv.Quote(s.SocketURL) + "\n")
	for _, c := range []string{"red", "green", "blue"} {
		bar, ok := s.Bars[c]
		if !ok {
			sb.WriteString("  #bar-" + c + " missing\n")
			continue
		}
		sb.WriteString("  #bar-" + c + " data-count=" + strconv.Quote(bar.Count) + " shown=" + strconv.Quote(bar.Shown) + "\n")
	}
	sb.WriteString("  log, newest first:")
	for _, e := range s.Entries {
		sb.WriteString("\n    channel=" + strconv.Quote(e.Channel) + " id=" + strconv.Quote(e.ID) + " payload=" + strconv.Quote(e.Payload))
	}
	return sb.String()
}

// wantBars checks every bar's data-count and the number it shows.
func (s pageState) wantBars(t *testing.T, when string, red, green, blue int) {
	t.Helper()
	if s.Err != "" {
		t.Fatalf("%s: %s", when, s)
	}
	for c, n := range map[string]int{"red": red, "green": green, "blue": blue} {
		want := strconv.Itoa(n)
		if bar := s.Bars[c]; bar.Count != want || bar.Shown != want {
			t.Errorf("%s: #bar-%s has data-count %q and shows %q, want %q\nthe page shows: %s",
				when, c, bar.Count, bar.Shown, want, s)
		}
	}
}

// wantNewest checks the number of log entries and the newest one.
func (s pageState) wantNewest(t *testing.T, when string, n int, channel, payload string) {
	t.Helper()
	if s.Err != "" {
		t.Fatalf("%s: %s", when, s)
	}
	if len(s.Entries) != n {
		t.Errorf("%s: the log has %d entries, want %d\nthe page shows: %s", when, len(s.Entries), n, s)
	}
	if len(s.Entries) == 0 {
		return
	}
	if e := s.Entries[0]; e.Channel != channel || e.Payload != payload || e.ID == "" {
		t.Errorf("%s: newest log entry has channel %q, id %q, payload %q; want channel %q, an id, payload %q",
			when, e.Channel, e.ID, e.Payload, channel, payload)
	}
}

// screenshot saves the whole page as page.png in the test's temporary
// directory, and also at $PGRELAY_SCREENSHOT when that is set.
func (b *browser) screenshot() {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	// Without motion the bars and the log are drawn in their final state,
	// not halfway through a transition.
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-reduced-motion", Value: "reduce"}},
	}); err != nil {
		b.t.Fatalf("emulate prefers-reduced-motion: %v", err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	paths := []string{filepath.Join(b.t.TempDir(), "page.png")}
	if p := os.Getenv("PGRELAY_SCREENSHOT"); p != "" {
		paths = append(paths, p)
	}
	for _, p := range paths {
		if err := os.WriteFile(p, png, 0o644); err != nil {
			b.t.Errorf("screenshot: %v", err)
			continue
		}
		b.t.Logf("screenshot (%d bytes): %s", len(png), p)
	}
}

// checkNoChromium fails the test if processes of the Chromium that used the
// profile dir outlive it, and kills them.
func checkNoChromium(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := chromiumProcesses(dir)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Errorf("chromium processes %v still ran 5s after the browser closed; killed them", pids)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// chromiumProcesses lists the processes started with --user-data-dir=dir.
// Chromium passes the flag to all its child processes.
func chromiumProcesses(dir string) []int {
	want := []byte("--user-data-dir=" + dir)
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		for arg := range bytes.SplitSeq(cmdline, []byte{0}) {
			if bytes.Equal(arg, want) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// checkNoChromedpGoroutines fails the test if goroutines running chromedp
// code outlive the browser.
func checkNoChromedpGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		left := chromedpGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d chromedp goroutines outlived the browser:\n\n%s", len(left), strings.Join(left, "\n\n"))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func chromedpGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var left []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/chromedp/") {
			left = append(left, g)
		}
	}
	return left
}
