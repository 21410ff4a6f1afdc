// Node's web-push doing, per notification, what sendNotification() does before the HTTP
// request: generateRequestDetails() encrypts the payload and signs the VAPID token.
// Prints one JSON line: pushes per second on one core.
'use strict';
const webpush = require('web-push');

const seconds = Number(process.argv[2] || 2);
const subscription = {
  endpoint: 'https://push.example.net/wpush/v2/bench',
  keys: {
    p256dh: 'BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4',
    auth: 'BTBZMqHH6r4Tts7J_aSIgg',
  },
};
const payload = JSON.stringify({
  account: 'juliet@capulet.lit', important: true, 'message-count': 1, 'last-message-body': 'New Message!',
});
const keys = webpush.generateVAPIDKeys();
const options = {
  vapidDetails: { subject: 'mailto:bench@example.org', publicKey: keys.publicKey, privateKey: keys.privateKey },
  contentEncoding: 'aes128gcm',
  TTL: 86400,
};

let count = 0;
const started = process.hrtime.bigint();
const deadline = started + BigInt(Math.round(seconds * 1e9));
while (process.hrtime.bigint() < deadline) {
  for (let i = 0; i < 16; i++) {
    webpush.generateRequestDetails(subscription, payload, options);
  }
  count += 16;
}
const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
console.log(JSON.stringify({ peer: 'web-push', per_sec: count / elapsed }));
