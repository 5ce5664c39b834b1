package probe

import "testing"

func TestModeIndex(t *testing.T) {
	for i, m := range Modes {
		if m.Index() != i {
			t.Errorf("%s.Index() = %d, its place in Modes is %d", m, m.Index(), i)
		}
	}
	if got := Mode("nope").Index(); got != ModeCount {
		t.Errorf("unknown mode's index %d, want ModeCount %d", got, ModeCount)
	}
}
