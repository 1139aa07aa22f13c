"""The embedded default robot: a MuJoCo tabletop arm, its task suite, the sim skill policy (stand-in VLA) and the scripted coach."""
