package supervisor

import "time"

// Ceiling and Delay give the external tests the backoff schedule, which is
// otherwise only the supervisor's to use.
func (b Backoff) Ceiling(attempt int) time.Duration { return b.ceiling(attempt) }

func (b Backoff) Delay(attempt int) time.Duration { return b.delay(attempt) }
