package agent_policy
default allow := true
