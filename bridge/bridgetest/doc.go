// Package bridgetest checks implementations of the bridge contracts and
// builds what their tests need, in the model of testing/fstest: SinkSuite
// checks any bridge.Sink against the contract documented on bridge.Sink;
// Drive plays the part of the pipeline (docs/pipeline.md) against a sink;
// Notification builds aviso-shaped notifications; Eventually polls a
// condition with a deadline.
//
// It is for tests only: nothing the aviso-bridge binary links imports it.
package bridgetest
