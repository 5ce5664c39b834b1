package batch

import (
	"slices"
	"testing"
)

func TestTake(t *testing.T) {
	ch := make(chan int, 10)
	if got := Take(ch, 1, 5); !slices.Equal(got, []int{1}) {
		t.Errorf("empty channel: %v", got)
	}
	for i := 2; i <= 8; i++ {
		ch <- i
	}
	if got := Take(ch, 1, 5); !slices.Equal(got, []int{1, 2, 3, 4, 5}) {
		t.Errorf("up to max: %v", got)
	}
	close(ch)
	if got := Take(ch, 0, 10); !slices.Equal(got, []int{0, 6, 7, 8}) {
		t.Errorf("closed channel: %v", got)
	}
}
