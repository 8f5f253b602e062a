package backoff

import (
	"testing"
	"time"
)

func TestJitterStaysInRange(t *testing.T) {
	for _, d := range []time.Duration{0, 1, time.Millisecond, 10 * time.Second} {
		for range 1000 {
			if j := Jitter(d); j < d/2 || j > d {
				t.Fatalf("Jitter(%s) = %s, outside [%s, %s]", d, j, d/2, d)
			}
		}
	}
}

func TestNext(t *testing.T) {
	if got := Next(100*time.Millisecond, time.Second); got != 200*time.Millisecond {
		t.Fatalf("Next = %s", got)
	}
	if got := Next(800*time.Millisecond, time.Second); got != time.Second {
		t.Fatalf("Next past max = %s", got)
	}
}
