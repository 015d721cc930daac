package checkpoint

// AbandonFile drops f's lock as the death of its process would, without
// Close (tests of standby take-over).
func AbandonFile(f *File) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lock != nil {
		_ = f.lock.Close()
		f.lock = nil
	}
}

// MemberLockPath is the lock file of member id of the file at path (a
// real path).
func MemberLockPath(path, id string) string { return memberLockPath(path, id) }
