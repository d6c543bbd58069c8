/* mdv-mqtt.h in a plugin built without libmosquitto (meson -Dmqtt=disabled,
 * or libmosquitto-dev absent): mqtt-uri fails the start with the reason.
 * Nothing else is reached without a publisher. */
#include "mdv-mqtt.h"

MdvMqtt *
mdv_mqtt_start (GstElement * owner, const gchar * uri,
    const gchar * topic_pattern, const gchar * host, const gchar * stream,
    const gchar * client_id, guint max_queued, gchar ** error)
{
  *error = g_strdup ("mqtt-uri is set, but this mustdrop plugin was built "
      "without MQTT (libmosquitto-dev was missing; meson -Dmqtt=enabled "
      "requires it)");
  return NULL;
}

void
mdv_mqtt_publish (MdvMqtt * m, const gchar * payload)
{
  g_return_if_reached ();
}

void
mdv_mqtt_counts (MdvMqtt * m, MdvMqttCounts * counts)
{
  g_return_if_reached ();
}

gboolean
mdv_mqtt_flush (MdvMqtt * m, gint64 timeout_us)
{
  g_return_val_if_reached (TRUE);
}

void
mdv_mqtt_stop (MdvMqtt * m, MdvMqttCounts * counts)
{
  g_return_if_reached ();
}
