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

#include <string>

#include "geometry_msgs/msg/pose_stamped.hpp"
#include "kosmos_bt/nodes.hpp"

namespace kosmos_bt
{

KosmosLocate::KosmosLocate(
  const std::string & name, const BT::NodeConfig & config)
: GoalNode(name, config, "/kosmos/locate") {}

BT::PortsList KosmosLocate::providedPorts()
{
  auto ports = goalPorts("/kosmos/locate");
  ports.insert(
  {
    BT::InputPort<std::string>("phrase", "What to find, e.g. \"the red cup\"."),
    BT::InputPort<double>(
      "min_score", 0.0, "Least score (0-1) of the box; FAILURE when no box "
      "has it."),
    BT::OutputPort<vision_msgs::msg::Detection2D>(
      "detection", "The best-scoring box (source pixels, the frame's header)."),
    BT::OutputPort<double>("score", "Its score."),
    BT::OutputPort<geometry_msgs::msg::PoseStamped>(
      "pose", "Its 3D centre, where the camera has depth (set only then)."),
    BT::OutputPort<bool>("has_pose", "Whether pose was set by this run."),
  });
  return ports;
}

std::string KosmosLocate::makeGoal(Goal & goal)
{
  auto phrase = getInput<std::string>("phrase");
  if (!phrase || phrase.value().empty()) {
    return "the phrase port is empty";
  }
  goal.phrase = phrase.value();
  return "";
}

BT::NodeStatus KosmosLocate::onResult(const Result & result)
{
  const double least = getInput<double>("min_score").value_or(0.0);
  const vision_msgs::msg::Detection2D * best = nullptr;
  double best_score = -1.0;
  for (const auto & detection : result.detections.detections) {
    const double score = detection.results.empty() ? 0.0 :
      detection.results[0].hypothesis.score;
    if (score >= least && score > best_score) {
      best = &detection;
      best_score = score;
    }
  }
  if (best == nullptr) {
    RCLCPP_INFO(
      logger(), "%s: no box for \"%s\" scores %.2f or more (%zu box(es))",
      name().c_str(), getInput<std::string>("phrase").value_or("").c_str(),
      least, result.detections.detections.size());
    return BT::NodeStatus::FAILURE;
  }
  setOutput("detection", *best);
  setOutput("score", best_score);
  // The 3D boxes are the 2D ones that had a valid depth, with the same
  // phrase and score: the score tells which one is the best box.
  bool has_pose = false;
  for (const auto & located : result.detections_3d.detections) {
    if (!located.results.empty() &&
      located.results[0].hypothesis.score == best_score)
    {
      geometry_msgs::msg::PoseStamped pose;
      pose.header = result.detections_3d.header;
      pose.pose = located.bbox.center;
      setOutput("pose", pose);
      has_pose = true;
      break;
    }
  }
  setOutput("has_pose", has_pose);
  return BT::NodeStatus::SUCCESS;
}

}  // namespace kosmos_bt
