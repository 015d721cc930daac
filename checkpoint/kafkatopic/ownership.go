package kafkatopic

// ownership is who holds one key, as the records read so far tell (the
// partition's total order is the arbiter; see Store).
type ownership struct {
	holder string       // the owner holding the key; "" when free
	recent [2]ownerMark // the newest records with an owner, of the two most recent distinct owners
}

// apply folds the owner of the key's record at off into the holder;
// false for a claim that lost.
func (o *ownership) apply(off int64, rec record) bool {
	switch {
	case rec.Owner == "":
		// A release (or a value written by hand): the key is free unless
		// it names someone else than the holder as the releaser, a bridge
		// that lost the key without noticing yet.
		if rec.ReleasedBy == "" || rec.ReleasedBy == o.holder {
			o.holder = ""
		}
	case rec.Claim:
		other := o.lastOther(rec.Owner)
		won := rec.Basis == nil || other.owner == "" || other.offset < *rec.Basis
		o.mark(rec.Owner, off)
		if !won {
			return false
		}
		o.holder = rec.Owner
	default: // a refresh or a commit
		o.mark(rec.Owner, off)
		if o.holder == "" {
			o.holder = rec.Owner
		}
	}
	return true
}

// mark notes that owner wrote the key at offset off.
func (o *ownership) mark(owner string, off int64) {
	if o.recent[0].owner != owner {
		o.recent[1] = o.recent[0]
	}
	o.recent[0] = ownerMark{owner: owner, offset: off}
}

// lastOther is the newest record with an owner other than owner (zero
// when there is none).
func (o *ownership) lastOther(owner string) ownerMark {
	for _, m := range o.recent {
		if m.owner != "" && m.owner != owner {
			return m
		}
	}
	return ownerMark{}
}
