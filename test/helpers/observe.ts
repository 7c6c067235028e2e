import { emptyEngineMetrics } from '../../src/detect/engine.ts';
import { type DetectorView, emptyDetectorMetrics, type TaskView } from '../../src/runtime/detector.ts';

/** A runtime view as DetectorRuntime.view() gives it, for the observe layer's unit tests. */
export function fakeView(over: Partial<DetectorView> = {}): DetectorView {
  const metrics = emptyDetectorMetrics();
  return {
    started: true,
    stopping: false,
    fatal: false,
    groupId: 'g',
    eventsTopic: 'ev',
    actionsTopic: 'ac',
    assignment: [],
    tasks: [],
    failing: [],
    busyMs: 0,
    metrics,
    work: { principal: emptyEngineMetrics(), action: emptyEngineMetrics() },
    ...over,
  };
}

export function fakeTask(over: Partial<TaskView> & Pick<TaskView, 'topic' | 'partition' | 'stage'>): TaskView {
  return {
    id: `${over.topic}:${over.partition}`,
    position: 0n,
    highWatermark: 0n,
    caughtUp: true,
    activeKeys: 0,
    openInsights: 0,
    watermarkMs: null,
    engine: emptyEngineMetrics(),
    failingAttempts: 0,
    ...over,
  };
}
