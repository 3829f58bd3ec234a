// Copyright 2026 The kosmos_ros Authors
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

#include <chrono>
#include <string>

#include "kosmos_bt/nodes.hpp"

namespace kosmos_bt
{

namespace
{
constexpr size_t kKeep = 64;  // sightings kept per phrase
}  // namespace

KosmosSeen::KosmosSeen(const std::string & name, const BT::NodeConfig & config)
: BT::ConditionNode(name, config), node_(nodeFrom(config)), spinner_(node_) {}

BT::PortsList KosmosSeen::providedPorts()
{
  return {
    BT::InputPort<std::string>(
      "topic", "The camera's standing-query detections, "
      "<image topic>/kosmos/queries."),
    BT::InputPort<std::string>("phrase", "The standing query to look for."),
    BT::InputPort<double>("min_score", 0.5, "Least score (0-1)."),
    BT::InputPort<double>(
      "within", 1.0, "Seconds: seen this recently (by arrival), or FAILURE."),
    BT::OutputPort<vision_msgs::msg::Detection2D>(
      "detection", "The newest such detection."),
  };
}

void KosmosSeen::onDetections(const Detections & msg)
{
  const auto now = std::chrono::steady_clock::now();
  for (const auto & detection : msg.detections) {
    if (detection.results.empty()) {
      continue;
    }
    auto & sightings = seen_[detection.results[0].hypothesis.class_id];
    sightings.push_front({now, detection});
    if (sightings.size() > kKeep) {
      sightings.pop_back();
    }
  }
}

BT::NodeStatus KosmosSeen::tick()
{
  auto topic = getInput<std::string>("topic");
  if (!topic || topic.value().empty()) {
    throw BT::RuntimeError(name(), ": the topic port is empty");
  }
  if (!subscription_ || topic.value() != topic_) {
    // Subscribed on the first tick: what was published before is not seen.
    seen_.clear();
    topic_ = topic.value();
    rclcpp::SubscriptionOptions options;
    options.callback_group = spinner_.group();
    subscription_ = node_->create_subscription<Detections>(
      topic_, rclcpp::QoS(10),
      [this](const Detections & msg) {onDetections(msg);}, options);
  }
  spinner_.spinSome();
  const auto phrase = getInput<std::string>("phrase").value_or("");
  const double least = getInput<double>("min_score").value_or(0.5);
  const auto within = std::chrono::duration<double>(
    getInput<double>("within").value_or(1.0));
  const auto now = std::chrono::steady_clock::now();
  auto found = seen_.find(phrase);
  if (found != seen_.end()) {
    for (const auto & sighting : found->second) {
      if (now - sighting.when > within) {
        break;  // newest first: the rest are older
      }
      if (sighting.detection.results[0].hypothesis.score >= least) {
        setOutput("detection", sighting.detection);
        return BT::NodeStatus::SUCCESS;
      }
    }
  }
  return BT::NodeStatus::FAILURE;
}

}  // namespace kosmos_bt
