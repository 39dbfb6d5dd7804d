// Package keywalk owns the order in which claims serve ordering keys: a walk
// over the keys in ascending order that starts after the last key the
// claimer served and wraps around, so every key with a claimable head gets
// its turn (round robin) and a key with a deep backlog cannot starve the
// others. The SQL claim statements walk this way; memstore walks the same
// way; both remember, for each claimer (ConsumerID), where it stopped with
// Next.
package keywalk

// Next is the key the next walk starts after, given that a walk started
// after from and served the keys served (unordered messages' "" ignored):
// the last of them in walk order. The walk visits the keys after from in
// ascending order, then wraps around to those up to from. With nothing
// served it stays at from.
func Next(from string, served []string) string {
	var lastAfter, lastWrapped string
	for _, k := range served {
		switch {
		case k == "":
		case k > from:
			lastAfter = max(lastAfter, k)
		default:
			lastWrapped = max(lastWrapped, k)
		}
	}
	switch {
	case lastWrapped != "":
		return lastWrapped
	case lastAfter != "":
		return lastAfter
	}
	return from
}

// Less reports whether a comes before b in a walk that starts after from:
// the keys after from ascending, then those up to from ascending.
func Less(from, a, b string) bool {
	aAfter, bAfter := a > from, b > from
	if aAfter != bAfter {
		return aAfter
	}
	return a < b
}

// MaxClaimers is how many claimers' places Places keeps.
const MaxClaimers = 64

// Places holds where each claimer's walk stopped, the key Next gave it, so
// that every claimer takes its own turns. It keeps at most MaxClaimers
// places: a new claimer beyond that replaces one of the others, which then
// starts its next walk from the first key (one lap out of turn, nothing
// lost). The zero value is empty and ready to use; it is not safe for
// concurrent use.
type Places struct {
	m map[string]string
}

// Get returns where claimer's next walk starts after ("" for the first key).
func (p *Places) Get(claimer string) string {
	return p.m[claimer]
}

// Set records that claimer's next walk starts after key; "" forgets the
// claimer's place.
func (p *Places) Set(claimer, key string) {
	if key == "" {
		delete(p.m, claimer)
		return
	}
	if _, known := p.m[claimer]; !known && len(p.m) >= MaxClaimers {
		for other := range p.m {
			delete(p.m, other)
			break
		}
	}
	if p.m == nil {
		p.m = map[string]string{}
	}
	p.m[claimer] = key
}

// Len is how many claimers have a place.
func (p *Places) Len() int {
	return len(p.m)
}
