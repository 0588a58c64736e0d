// Preload (node --import) for child processes that reach fauxqs through AWS_ENDPOINT_URL.
// fauxqs names its queues http://sqs.REGION.localhost:PORT/..., and an SQSClient whose
// endpoint comes from the environment (not its constructor) sends each call to the queue
// URL's own host, as it does with real SQS. Resolving *.localhost to 127.0.0.1 in the child
// makes those URLs reachable without changing how the production root builds its clients.
import { interceptLocalhostDns } from 'fauxqs';

interceptLocalhostDns();
