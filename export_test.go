package memory

// PipelineAlways, set, sends every command through the auto-pipeliner of a
// Memory with WithAutoPipeline, lone ones included.
var PipelineAlways = &pipelineAlways
