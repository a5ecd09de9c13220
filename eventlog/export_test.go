package eventlog

// LagDirectGets sends l's direct gets to prefix (a stand-in for a follower
// that lags) and makes its reads end at the leader, as on a cluster.
func LagDirectGets(l *Log, prefix string) { l.directAPI, l.leaderReads = prefix, true }

// DirectGetAPI is the subject prefix direct gets are sent to.
const DirectGetAPI = directGetAPI
