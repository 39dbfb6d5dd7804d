package relay

import (
	"math/rand/v2"
	"time"
)

// Backoff returns how long to wait before the next attempt of a message
// whose attempt number attempt (1 for the first delivery) just failed.
type Backoff func(attempt int) time.Duration

// ExponentialBackoff doubles the delay with every attempt, from base up to
// limit, and picks the actual delay uniformly between zero and that ceiling
// ("full jitter"), so that messages failing together do not retry together.
func ExponentialBackoff(base, limit time.Duration) Backoff {
	return func(attempt int) time.Duration {
		ceiling := base
		for i := 1; i < attempt && ceiling < limit; i++ {
			ceiling *= 2
		}
		ceiling = min(ceiling, limit)
		if ceiling <= 0 {
			return 0
		}
		return rand.N(ceiling + 1)
	}
}
