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
